#!/usr/bin/env bash
# The MLflow tracking server for edgeq: embedded SQLite (the default) or PostgreSQL from
# Debian's packages in a project-local cluster, served artifacts, optional basic-auth.
#
#   scripts/server.sh start [--backend sqlite|postgres] [--auth] [--host 127.0.0.1] [--port 5000]
#                           [--db-uri postgresql://…] [--allowed-hosts LIST] [--workers N] [--dir DIR]
#                           [--devices N]   # the fleet it serves: warns past what the store measured
#                           [--http-server gthread|uvicorn]   # gthread (default): half uvicorn's CPU per request
#   scripts/server.sh stop   [--dir DIR]
#   scripts/server.sh status [--dir DIR]
#   scripts/server.sh db     [--dir DIR]   # only the PostgreSQL cluster; prints its backend store URI
#
# Everything lives in DIR (default .edgeq/server, or $EDGEQ_SERVER_DIR): the SQLite file or
# the PostgreSQL cluster (pg/, run by an unprivileged user: the `postgres` system user when
# this runs as root), the artifacts, the auth store and generated passwords, the logs.
# MLflow's Flask app is served by gunicorn's threaded workers with a database connection per
# thread (bench/capacity.py: half the CPU per request of mlflow's default, uvicorn wrapping the
# Flask app in FastAPI); --http-server uvicorn starts mlflow's default instead.
# Nothing system-wide is configured and the Debian default cluster is left alone. mlflow itself
# is started, checked and stopped by the project's one launcher, registry_tools/mlflow_server.py.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

die() { echo "server.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

CMD=${1:-}; [ -n "$CMD" ] || usage; shift
DIR=${EDGEQ_SERVER_DIR:-.edgeq/server}
BACKEND=sqlite AUTH=0 HOST=127.0.0.1 PORT=5000 DB_URI="" ALLOWED_HOSTS="" WORKERS="" DEVICES=${EDGEQ_FLEET_DEVICES:-}
HTTP_SERVER=gthread
# Devices on 15-minute runs one server held with 30 % headroom on 2 cores (BENCHMARKS.md "Server capacity";
# PostgreSQL: gthread, as measured with wrk; SQLite: its lowest cell under uvicorn, kept as the cautious bound).
SQLITE_DEVICES=45000 POSTGRES_DEVICES=150000
# gunicorn's threaded workers, the same options bench/capacity.py measures (GTHREAD_OPTS there): as many
# pooled database connections as threads (none opened and closed per request), request lines up to
# gunicorn's most (its 4 KiB default refuses long GET filters uvicorn takes), the access log in
# server.log, no control socket in the home directory (two servers on a host would share it).
GTHREAD_THREADS=8
GTHREAD_OPTS="--worker-class gthread --threads $GTHREAD_THREADS --keep-alive 30 --limit-request-line 8190"
GTHREAD_OPTS+=" --access-logfile - --no-control-socket"
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND=${2:?--backend needs sqlite or postgres}; shift 2 ;;
        --auth) AUTH=1; shift ;;
        --host) HOST=${2:?}; shift 2 ;;
        --port) PORT=${2:?}; shift 2 ;;
        --db-uri) DB_URI=${2:?}; BACKEND=postgres; shift 2 ;;
        --allowed-hosts) ALLOWED_HOSTS=${2:?}; shift 2 ;;
        --workers) WORKERS=${2:?}; shift 2 ;;
        --devices) DEVICES=${2:?--devices needs a number}; shift 2 ;;
        --http-server) HTTP_SERVER=${2:?--http-server needs gthread or uvicorn}; shift 2 ;;
        --dir) DIR=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown option $1 (see: scripts/server.sh --help)" ;;
    esac
done
case "$BACKEND" in sqlite|postgres) ;; *) die "--backend must be sqlite or postgres, got '$BACKEND'" ;; esac
case "$HTTP_SERVER" in gthread|uvicorn) ;; *) die "--http-server must be gthread or uvicorn, got '$HTTP_SERVER'" ;; esac
case "$PORT" in ''|*[!0-9]*) die "--port must be a number, got '$PORT'" ;; esac
case "$DEVICES" in *[!0-9]*) die "--devices must be a number, got '$DEVICES'" ;; esac
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
umask 077  # passwords, DB URIs and logs stay the owner's; $DIR itself only searchable by others (for the cluster's owner)
case "$CMD" in start|db) chmod 0711 "$DIR" ;; esac
STATE=$DIR/server.env
PGDATA=$DIR/pg/data PGSOCK=$DIR/pg/run PGBIN=${EDGEQ_PG_BIN:-/usr/lib/postgresql/15/bin}
MLFLOW=${MLFLOW_BIN:-$REPO/.venv/bin/mlflow}
[ -x "$MLFLOW" ] || MLFLOW=$(command -v mlflow || true)
PYTHON=$(dirname "${MLFLOW:-/usr/bin/python3}")/python; [ -x "$PYTHON" ] || PYTHON=python3

# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "${EDGEQ_PG_USER:-postgres}" -- "$@"); else "$@"; fi
}

# The one launcher (registry_tools/mlflow_server.py, standard library only) starts, checks and stops mlflow.
launcher() { "$PYTHON" -m registry_tools.mlflow_server "$@"; }
healthy() { launcher ping "http://127.0.0.1:$1"; }

server_pid() {
    local pid
    pid=$(cat "$DIR/server.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

pg_running() { [ -f "$PGDATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

ensure_postgres_installed() {
    [ -x "$PGBIN/initdb" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing PostgreSQL from Debian's packages (apt-get install -y postgresql)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1; } \
            || true
    fi
    [ -x "$PGBIN/initdb" ] || die "PostgreSQL is not installed and could not be installed here: run 'sudo apt-get install -y postgresql' (or set EDGEQ_PG_BIN to its bin directory)"
}

start_postgres() {
    ensure_postgres_installed
    local owner=postgres
    [ "$(id -u)" = 0 ] || owner=$(id -un)
    [ "${#PGSOCK}" -lt 90 ] || die "the socket path $PGSOCK is too long for PostgreSQL; use a shorter --dir"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        echo "== creating a PostgreSQL cluster in $DIR/pg (owner: $owner)" >&2
        mkdir -p "$DIR/pg"
        chmod 0700 "$DIR/pg"
        [ "$(id -u)" = 0 ] && chown "$owner" "$DIR/pg"
        as_pg test -x "$DIR/pg" || die "user $owner cannot reach $DIR/pg: every directory above it must be searchable (chmod o+x), or use another --dir"
        as_pg mkdir -p "$PGDATA" "$PGSOCK"
        as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=reject \
            >"$DIR/pg/initdb.log" 2>&1 || die "initdb failed: see $DIR/pg/initdb.log"
        # No TCP listener: only the owner (and root) can reach the socket directory.
        as_pg sh -c "cat >> '$PGDATA/postgresql.conf'" <<EOF
listen_addresses = ''
unix_socket_directories = '$PGSOCK'
unix_socket_permissions = 0700
EOF
    fi
    as_pg chmod 0700 "$PGSOCK"
    if ! pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$DIR/pg/postgres.log" -w -t 60 start >/dev/null \
            || die "PostgreSQL did not start: see $DIR/pg/postgres.log"
    fi
    # The server connects as a role that owns its two databases and nothing else.
    local db
    if [ -z "$(as_pg "$PGBIN/psql" -h "$PGSOCK" -U postgres -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'mlflow'")" ]; then
        as_pg "$PGBIN/createuser" -h "$PGSOCK" -U postgres mlflow
    fi
    for db in mlflow mlflow_auth; do
        if [ -z "$(as_pg "$PGBIN/psql" -h "$PGSOCK" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
            as_pg "$PGBIN/createdb" -h "$PGSOCK" -U postgres -O mlflow "$db"
        fi
    done
}

write_auth_config() {
    local db_uri=$1
    # The admin's password, and the key the auth app's CSRF protection needs (same for every worker).
    local f
    for f in admin.password flask.secret; do
        [ -s "$DIR/$f" ] || "$PYTHON" -c "import secrets; print(secrets.token_urlsafe(24))" > "$DIR/$f"
        chmod 600 "$DIR/$f"
    done
    # default_permission NO_PERMISSIONS: a user sees only what is granted (MLflow ships READ for everyone).
    cat > "$DIR/basic_auth.ini" <<EOF
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $db_uri
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
# Each request otherwise re-hashes the password (PBKDF2, ~1 s on a busy small machine). A changed or
# deleted password may keep working on another worker for up to this many seconds.
auth_cache_ttl_seconds = ${EDGEQ_AUTH_CACHE_TTL:-60}
EOF
}

warn_capacity() {
    [ -n "$DEVICES" ] || return 0
    if [ "$BACKEND" = sqlite ] && [ "$DEVICES" -gt "$SQLITE_DEVICES" ]; then
        echo "WARNING: $DEVICES devices on SQLite: one SQLite server held $SQLITE_DEVICES on 15-minute runs with 30 % headroom (BENCHMARKS.md, bench/capacity.py); use --backend postgres (docs/scale.md)" >&2
    elif [ "$BACKEND" = postgres ] && [ "$DEVICES" -gt "$POSTGRES_DEVICES" ]; then
        echo "WARNING: $DEVICES devices: one PostgreSQL server on 2 cores held $POSTGRES_DEVICES with 30 % headroom (BENCHMARKS.md); give it more cores, or run several servers behind a load balancer (docs/scale.md)" >&2
    fi
}

start() {
    if [ -f "$STATE" ] && pid=$(server_pid) && healthy "$(. "$STATE"; echo "$PORT")"; then
        echo "already running (pid $pid): MLFLOW_TRACKING_URI=$(. "$STATE"; echo "$URI")"; return 0
    fi
    [ -n "$MLFLOW" ] || die "mlflow not found: run scripts/setup.sh (or pip install 'edgeq[server]')"
    warn_capacity
    if healthy "$PORT"; then die "port $PORT is already serving something else; choose another --port"; fi
    local store auth_store
    if [ "$BACKEND" = postgres ] && [ -z "$DB_URI" ]; then
        start_postgres
        store="postgresql+psycopg2://mlflow@/mlflow?host=$PGSOCK"
        auth_store="postgresql+psycopg2://mlflow@/mlflow_auth?host=$PGSOCK"
    elif [ "$BACKEND" = postgres ]; then
        # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; edgeq[server] installs psycopg2.
        store=${DB_URI/#postgresql:\/\//postgresql+psycopg2://}
        auth_store=${EDGEQ_AUTH_DB_URI:-sqlite:///$DIR/basic_auth.db}
    else
        store="sqlite:///$DIR/mlflow.db"
        auth_store="sqlite:///$DIR/basic_auth.db"
    fi
    local -a args=(start --dir "$DIR" --mlflow "$MLFLOW" --host "$HOST" --port "$PORT" --timeout 120
                   --workers "${WORKERS:-$([ "$BACKEND" = sqlite ] && echo 1 || echo 2)}" --backend-store-uri "$store" --)
    [ -n "$ALLOWED_HOSTS" ] && args+=(--allowed-hosts "$ALLOWED_HOSTS")
    local -a http_env=()
    if [ "$HTTP_SERVER" = gthread ]; then
        args+=(--gunicorn-opts "$GTHREAD_OPTS")
        http_env=(MLFLOW_SQLALCHEMYSTORE_POOL_SIZE="${MLFLOW_SQLALCHEMYSTORE_POOL_SIZE:-$GTHREAD_THREADS}")
    fi
    if [ "$AUTH" = 1 ]; then
        write_auth_config "$auth_store"
        args+=(--app-name basic-auth)
    elif [ "$HOST" != 127.0.0.1 ] && [ "$HOST" != localhost ]; then
        echo "WARNING: listening on $HOST without --auth: anyone who reaches it can change the registry" >&2
    fi
    local uri_host=$HOST
    case "$HOST" in 0.0.0.0|::|'') uri_host=127.0.0.1 ;; esac
    local uri="http://$uri_host:$PORT"
    echo "== starting mlflow server on $HOST:$PORT (backend $BACKEND, $HTTP_SERVER, auth $([ "$AUTH" = 1 ] && echo on || echo off), store $DIR)" >&2
    # The auth settings only with --auth: MLflow reads MLFLOW_AUTH_CONFIG_PATH even without the basic-auth app,
    # and a path to a config that does not exist makes every runs/search a 500.
    local -a auth_env=()
    [ "$AUTH" = 1 ] && auth_env=(MLFLOW_AUTH_CONFIG_PATH="$DIR/basic_auth.ini"
        MLFLOW_AUTH_ADMIN_PASSWORD="$(cat "$DIR/admin.password" 2>/dev/null || true)"
        MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(cat "$DIR/flask.secret" 2>/dev/null || true)}")
    env "${auth_env[@]}" "${http_env[@]}" "$PYTHON" -m registry_tools.mlflow_server "${args[@]}" >/dev/null || die "mlflow server did not start: see $DIR/server.log"
    printf 'BACKEND=%q\nAUTH=%q\nHOST=%q\nPORT=%q\nURI=%q\nSTORE=%q\n' "$BACKEND" "$AUTH" "$HOST" "$PORT" "$uri" "$store" > "$STATE"
    echo "MLFLOW_TRACKING_URI=$uri"
    [ "$AUTH" = 1 ] && echo "admin password: $DIR/admin.password (users: .venv/bin/python -m registry_tools.users --help)"
    return 0
}

stop() {
    launcher stop --dir "$DIR"
    if [ -d "$PGDATA" ] && pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || die "PostgreSQL did not stop: see $DIR/pg/postgres.log"
        echo "stopped PostgreSQL ($DIR/pg)"
    fi
    return 0
}

status() {
    local rc=0
    if [ -f "$STATE" ]; then
        # shellcheck disable=SC1090
        . "$STATE"
        if pid=$(server_pid) && healthy "$PORT"; then
            echo "mlflow server: running (pid $pid) at $URI, backend $BACKEND, auth $([ "$AUTH" = 1 ] && echo on || echo off)"
        else
            echo "mlflow server: stopped (last: $URI, backend $BACKEND)"; rc=3
        fi
    else
        echo "mlflow server: never started in $DIR"; rc=3
    fi
    if [ -d "$PGDATA" ]; then
        if pg_running; then echo "PostgreSQL: running ($DIR/pg, socket $PGSOCK)"; else echo "PostgreSQL: stopped ($DIR/pg)"; fi
    fi
    return $rc
}

case "$CMD" in
    start) start ;;
    db) start_postgres; echo "postgresql+psycopg2://mlflow@/mlflow?host=$PGSOCK" ;;
    stop) stop ;;
    status) status ;;
    -h|--help) usage ;;
    *) die "unknown command '$CMD': start, stop, status or db" ;;
esac
