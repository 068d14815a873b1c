// Loaded before any player: records what the player hands to the browser's Media Source Extensions — each
// SourceBuffer's type, and every append with the timestampOffset in force — so that the test can find the
// flashes and beeps on the media timeline exactly as the browser was given them.
(() => {
  const buffers = [];
  const addSourceBuffer = MediaSource.prototype.addSourceBuffer;
  MediaSource.prototype.addSourceBuffer = function (type) {
    const buffer = addSourceBuffer.call(this, type);
    buffers.push({ buffer, type, appends: [] });
    return buffer;
  };
  const changeType = SourceBuffer.prototype.changeType;
  SourceBuffer.prototype.changeType = function (type) {
    const entry = buffers.find((b) => b.buffer === this);
    if (entry) entry.appends.push({ type });
    return changeType.call(this, type);
  };
  const appendBuffer = SourceBuffer.prototype.appendBuffer;
  SourceBuffer.prototype.appendBuffer = function (data) {
    const entry = buffers.find((b) => b.buffer === this);
    if (entry) {
      const view = ArrayBuffer.isView(data)
        ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : new Uint8Array(data);
      entry.appends.push({ offset: this.timestampOffset, bytes: view.slice() });
    }
    return appendBuffer.call(this, data);
  };

  function base64(bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  // What the test reads back: appends as base64, and the ranges the browser says each buffer holds.
  window.capturedBuffers = () =>
    buffers.map(({ buffer, type, appends }) => {
      let ranges = [];
      try {
        ranges = Array.from({ length: buffer.buffered.length }, (_, i) => [
          buffer.buffered.start(i),
          buffer.buffered.end(i),
        ]);
      } catch (e) {
        // a buffer whose MediaSource has ended no longer reports ranges
      }
      return {
        type,
        ranges,
        appends: appends.map((a) => (a.bytes ? { offset: a.offset, data: base64(a.bytes) } : { type: a.type })),
      };
    });
})();
