#!/bin/sh
# Entry point of the FrameFleet images. The first argument picks the service:
#   api | worker | beat | db upgrade | keys create ...  any `framefleet` subcommand
#   flower                                              Flower, listening on all interfaces of the container
#   s3-bucket                                           create the bucket of an s3:// FRAMEFLEET_OUTPUT_ROOT
# A leading --reload (development) restarts the service whenever the Python source changes.
set -eu

# Compose secrets: NAME_FILE=/run/secrets/x sets NAME to that file's contents, for FRAMEFLEET_* settings and
# Flower's basic-auth credentials, so no secret has to sit in an environment block or an image.
for name in $(env | sed -n -e 's/^\(FRAMEFLEET_[A-Z0-9_]*\)_FILE=.*/\1/p' -e 's/^\(FLOWER_BASIC_AUTH\)_FILE=.*/\1/p'); do
  file=$(printenv "${name}_FILE")
  if [ ! -r "$file" ]; then
    echo "framefleet-entrypoint: ${name}_FILE names $file, which cannot be read" >&2
    exit 64
  fi
  value=$(cat "$file")
  export "$name=$value"
  # Flower reads every FLOWER_* variable as an option and refuses unknown ones such as *_FILE.
  unset "${name}_FILE"
done

if [ "${1:-}" = --reload ]; then
  shift
  # The package Python imports: the mounted source when PYTHONPATH points at it, else the installed one.
  src=$(python -c 'import framefleet, os; print(os.path.dirname(framefleet.__file__))')
  if [ "${1:-api}" = api ]; then
    shift $(( $# > 0 ? 1 : 0 ))
    exec uvicorn framefleet.api.app:create_app --factory --reload --reload-dir "$src" --no-proxy-headers \
      --host "${FRAMEFLEET_API_HOST:-0.0.0.0}" --port "${FRAMEFLEET_API_PORT:-8000}" "$@"
  fi
  exec watchfiles --filter python "framefleet-entrypoint $*" "$src"
fi

case "${1:-api}" in
  flower)
    shift
    if [ "${FRAMEFLEET_ENV:-dev}" = prod ] && [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
      echo "framefleet-entrypoint: Flower needs FLOWER_BASIC_AUTH (user:password) when FRAMEFLEET_ENV=prod" >&2
      exit 64
    fi
    # `framefleet flower` listens on loopback only (right for `framefleet up`); in a container the port
    # must be reachable from the gateway network, Prometheus and the published port.
    exec celery --app framefleet.celery_app:app --quiet flower \
      --address=0.0.0.0 --port="${FRAMEFLEET_FLOWER_PORT:-5555}" "$@"
    ;;
  s3-bucket)
    exec python /opt/framefleet-image/s3_bucket.py
    ;;
  *)
    exec framefleet "$@"
    ;;
esac
