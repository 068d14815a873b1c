"""GPU energy from NVML: the device choice, counter arithmetic and the reader, on a stand-in NVML module
that replays counter values (the NVML functions the reader calls, nothing else), and the real counter where
this machine has an NVIDIA GPU."""

from __future__ import annotations

import time

import pytest

from framefleet.media.capabilities import nvidia_present
from framefleet.observability import cost
from framefleet.observability.nvml import GpuReading, Reader, encode_device, gpu_joules, job_share

UUIDS = ["GPU-5f0e7c1a-aaaa-bbbb-cccc-000000000000", "GPU-9d2b44e0-dddd-eeee-ffff-111111111111"]


class FakeNvml:
    """The pynvml functions the reader uses; each device replays its counter values in millijoules."""

    class NVMLError(Exception):
        pass

    def __init__(self, counters: dict[str, list[int]], *, init_error: bool = False) -> None:
        self.counters = {uuid: list(values) for uuid, values in counters.items()}
        self.init_error = init_error
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.counters)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return list(self.counters)[index]

    def nvmlDeviceGetUUID(self, handle: str) -> bytes:
        return handle.encode()  # older bindings answer bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        values = self.counters[handle]
        if not values:
            raise self.NVMLError("Not Supported")
        return values.pop(0)


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, UUIDS[0]),
        ("1", UUIDS[1]),
        ("1,0", UUIDS[1]),
        ("GPU-9d2b", UUIDS[1]),
        ("7", None),
        ("", None),
        ("-1", None),
        ("GPU-ffff", None),
    ],
)
def test_the_encode_device_is_the_first_cuda_visible_one(visible: str | None, expected: str | None) -> None:
    assert encode_device(visible, UUIDS) == expected


def test_counter_arithmetic() -> None:
    before, after = GpuReading(UUIDS[0], 1_000_000), GpuReading(UUIDS[0], 1_351_500)
    assert gpu_joules(before, after) == pytest.approx(351.5)
    assert gpu_joules(after, before) is None  # went back: the driver reloaded
    assert gpu_joules(before, GpuReading(UUIDS[1], 2_000_000)) is None
    assert gpu_joules(None, after) is None and gpu_joules(before, None) is None
    assert job_share(300.0, slots=3) == pytest.approx(100.0)
    assert job_share(300.0, slots=0) == pytest.approx(300.0)


def test_reader_replays_the_visible_devices_counter() -> None:
    # Device 1 drew 70.2 W for 5 s, then 281 W for 5 s; device 0 (not ours) changes too.
    fake = FakeNvml({UUIDS[0]: [5_000, 900_000], UUIDS[1]: [2_000_000, 2_351_000, 3_756_000]})
    reader = Reader(fake, visible="1")
    first, second, third = reader.read(), reader.read(), reader.read()
    assert first == GpuReading(UUIDS[1], 2_000_000)
    assert gpu_joules(first, second) == pytest.approx(351.0)
    assert gpu_joules(second, third) == pytest.approx(1405.0)
    assert reader.read() is None  # the counter stopped answering: no reading, no exception
    assert fake.inits == 1


def test_no_library_or_no_visible_device_gives_no_reading() -> None:
    broken = FakeNvml({UUIDS[0]: [1]}, init_error=True)
    reader = Reader(broken)
    assert reader.read() is None and reader.read() is None
    assert broken.inits == 1  # a failed start is not retried on every job
    assert Reader(FakeNvml({UUIDS[0]: [1, 2]}), visible="-1").read() is None


def test_gpu_energy_in_the_usage_record() -> None:
    rates = cost.Rates(
        currency="EUR",
        price_per_kwh=0.36,
        cpu_hour_rate=0.0,
        gpu_hour_rate=3.6,
        watts_per_core=10.0,
        watts_per_gpu=70.0,
    )
    measured = cost.attempt_usage(
        cpu_seconds=2.0,
        wall_seconds=12.0,
        measured_joules=40.0,
        rates=rates,
        gpu_seconds=10.0,
        measured_gpu_joules=700.0,
    )
    assert measured["joules"] == 740.0 and measured["gpu_joules"] == 700.0
    assert measured["joules_source"] == "rapl+nvml"
    # 740 J = 740 / 3.6e6 kWh; 10 GPU-seconds at 3.6 an hour.
    assert measured["cost"]["amount"] == pytest.approx(740 / 3.6e6 * 0.36 + 0.01)
    unread = cost.attempt_usage(
        cpu_seconds=2.0, wall_seconds=12.0, measured_joules=40.0, rates=rates, gpu_seconds=10.0
    )
    assert unread["gpu_joules"] == 700.0 and unread["joules_source"] == "estimated"
    cpu_only = cost.attempt_usage(cpu_seconds=2.0, wall_seconds=3.0, measured_joules=40.0, rates=rates)
    assert cpu_only["gpu_joules"] == 0.0 and cpu_only["joules_source"] == "rapl"
    total = cost.add_usage(cost.add_usage(None, cpu_only), measured)
    assert total["joules_source"] == "rapl+nvml" and total["gpu_joules"] == 700.0
    assert cost.add_usage(total, unread)["joules_source"] == "estimated"


@pytest.mark.gpu
@pytest.mark.skipif(not nvidia_present(), reason="needs an NVIDIA GPU and its driver")
def test_real_counter_of_this_machines_gpu() -> None:
    reader = Reader()
    first = reader.read()
    assert first is not None, "an NVIDIA GPU is present, so NVML must read its energy counter"
    time.sleep(1.0)
    second = reader.read()
    joules = gpu_joules(first, second)
    # Any GPU draws something when idle, and none draws more than 2 kW.
    assert joules is not None and 1.0 < joules < 2000.0, joules
