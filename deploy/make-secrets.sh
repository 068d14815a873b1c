#!/bin/sh
# Create the secret files the prod, gpu and monitoring profiles read (compose.yaml `secrets:`), with fresh
# random passwords, in DIR (default: deploy/secrets next to this script). Existing files are kept, so
# running it again never changes a password a deployment already uses.
#
#   sh deploy/make-secrets.sh [DIR]
#
# The database and Redis URLs point at the prod profile's own services (postgres, redis); edit those two
# files to use servers of your own.
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 0700 "$dir"
umask 077

random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
put() {  # put NAME VALUE: write the file unless it exists
  if [ ! -e "$dir/$1" ]; then printf '%s\n' "$2" > "$dir/$1"; echo "created $dir/$1"; fi
}

[ -e "$dir/postgres_password" ] || put postgres_password "$(random)"
[ -e "$dir/redis_conf" ] || put redis_conf "requirepass $(random)"
pg_password=$(cat "$dir/postgres_password")
redis_password=$(sed -n 's/^requirepass //p' "$dir/redis_conf")

put framefleet_secret_key "$(random)$(random)"
put framefleet_database_url "postgresql://framefleet:$pg_password@postgres:5432/framefleet"
put framefleet_redis_url "redis://:$redis_password@redis:6379/0"
put flower_basic_auth "admin:$(random)"
put grafana_admin_password "$(random)"
