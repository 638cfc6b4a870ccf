#!/usr/bin/env bash
# dicomgate installer. Runs from an unpacked bundle (./scripts/bundle builds one) and never
# touches the network: everything it installs is in the bundle.
#
#   sudo ./install.sh [--prefix /opt/dicomgate] [--config-dir /etc/dicomgate]
#                     [--state-dir /var/lib/dicomgate] [--user dicomgate] [--no-systemd]
#                     [--python PATH] [--keep 3]
#        install, or upgrade the installed version (stop, back up, migrate, switch, start)
#   sudo ./install.sh --rollback [--prefix ...]    back to the previous release
#   ./install.sh --check                           prerequisites only
#   sudo ./install.sh --install-debs               the bundle's Debian 12 packages (--debs)
#
# Exit: 0 done; 1 failed (the version that was running still runs); 2 usage;
#       3 a prerequisite is missing (each one named, with where it comes from).
set -euo pipefail
umask 022
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/dicomgate CONFIG_DIR=/etc/dicomgate STATE_DIR=/var/lib/dicomgate SVC_USER=dicomgate
SYSTEMD=1 MODE=install PYTHON="" KEEP=3 UNIT=dicomgate
declare -A GIVEN=()

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit "${2:-1}"; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while (($#)); do
  case "$1" in
    --prefix) PREFIX=${2:?}; GIVEN[prefix]=1; shift ;;
    --config-dir) CONFIG_DIR=${2:?}; GIVEN[config]=1; shift ;;
    --state-dir) STATE_DIR=${2:?}; GIVEN[state]=1; shift ;;
    --user) SVC_USER=${2:?}; GIVEN[user]=1; shift ;;
    --python) PYTHON=${2:?}; shift ;;
    --keep) KEEP=${2:?}; shift ;;
    --no-systemd) SYSTEMD=0; GIVEN[systemd]=1 ;;
    --rollback) MODE=rollback ;;
    --check) MODE=check ;;
    --install-debs) MODE=debs ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
case "$PREFIX$CONFIG_DIR$STATE_DIR" in *' '*) die "paths with spaces are not supported" 2;; esac

# Settings of the first install are kept, so an upgrade or a rollback needs no flags.
load_settings() {
  local f="$PREFIX/install.env" k v
  [ -f "$f" ] || return 0
  while IFS='=' read -r k v; do
    case "$k" in
      CONFIG_DIR) [ -n "${GIVEN[config]:-}" ] || CONFIG_DIR=$v ;;
      STATE_DIR) [ -n "${GIVEN[state]:-}" ] || STATE_DIR=$v ;;
      SVC_USER) [ -n "${GIVEN[user]:-}" ] || SVC_USER=$v ;;
      SYSTEMD) [ -n "${GIVEN[systemd]:-}" ] || SYSTEMD=$v ;;
    esac
  done < "$f"
}
save_settings() {
  printf 'CONFIG_DIR=%s\nSTATE_DIR=%s\nSVC_USER=%s\nSYSTEMD=%s\n' \
    "$CONFIG_DIR" "$STATE_DIR" "$SVC_USER" "$SYSTEMD" > "$PREFIX/install.env.tmp"
  mv -f "$PREFIX/install.env.tmp" "$PREFIX/install.env"
}

manifest() { sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$HERE/MANIFEST.json"; }
is_root() { [ "$(id -u)" -eq 0 ]; }
# Commands that write the state store run as the service user, so its files stay theirs.
as_user() {
  if is_root && [ "$SVC_USER" != root ] && [ "$SVC_USER" != "$(id -un)" ]; then
    runuser -u "$SVC_USER" -- "$@"
  else
    "$@"
  fi
}
dg() { DICOMGATE_CONFIG="$CONFIG_DIR/dicomgate.toml" "$1/venv/bin/dicomgate" "${@:2}"; }

# ---- prerequisites ---------------------------------------------------------------------
PROBLEMS=()
problem() { PROBLEMS+=("$1"); }

pick_python() {
  local c v have=""
  local candidates=("$PYTHON")
  [ -n "$PYTHON" ] || candidates=(python3.13 python3.12 python3.11 python3
                                  /usr/local/bin/python3.13 /usr/local/bin/python3.12
                                  /usr/local/bin/python3.11 /usr/bin/python3)
  for c in "${candidates[@]}"; do
    command -v "$c" >/dev/null 2>&1 || continue
    v=$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    if [ ! -f "$HERE/locks/cp${v/./}.txt" ]; then have+=" $c ($v)"; continue; fi
    if ! "$c" -c 'import venv, sqlite3, ssl, ctypes' 2>/dev/null; then
      have+=" $c ($v, lacks venv/sqlite3/ssl)"; continue
    fi
    PYTHON=$(command -v "$c"); PYVER=$v; return 0
  done
  local wanted; wanted=$(cd "$HERE/locks" && ls cp3*.txt | sed 's/cp3\(.*\)\.txt/3.\1/' | xargs)
  problem "python3 of version ${wanted// /, } with venv, sqlite3, ssl (found:${have:- none}).
      Debian 12: apt install python3 (3.11); Ubuntu 24.04: python3 (3.12);
      openEuler 24.03: dnf install python3 (3.11); Kylin/UOS: the vendor's python3.11 if any;
      a Python too old (CentOS 7, Kylin V10 3.7/3.8): use the OCI image
      dicomgate-$(manifest version)-oci-$(manifest arch).tar (scripts/bundle --oci)."
  return 1
}

check_prerequisites() {
  local arch need_glibc have_glibc
  arch=$(manifest arch)
  [ "$(uname -m)" = "$arch" ] || problem "this bundle is for $arch, this host is $(uname -m):
      use dicomgate-$(manifest version)-linux-$(uname -m).tar.gz"
  pick_python || true
  need_glibc=$(manifest glibc_min)
  have_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  if [ -z "$have_glibc" ] || ! printf '%s\n%s\n' "$need_glibc" "$have_glibc" | sort -C -V; then
    problem "glibc $need_glibc or newer (found: ${have_glibc:-none}): the wheels are
      manylinux_${need_glibc/./_}; older hosts use the OCI image"
  fi
  # grep reads all of it (no -q): ldconfig must not die of SIGPIPE under pipefail
  if ! { ldconfig -p 2>/dev/null | grep 'libodbc\.so\.2 ' >/dev/null; } &&
     ! ls /usr/lib*/libodbc.so.2 /usr/lib/*-linux-gnu/libodbc.so.2 /usr/lib64/libodbc.so.2 \
          >/dev/null 2>&1; then
    local hint="Debian/Ubuntu: apt install unixodbc; openEuler/Kylin/UOS: dnf install unixODBC"
    [ -d "$HERE/debs" ] && hint+="; offline Debian 12: sudo ./install.sh --install-debs"
    problem "libodbc.so.2 (unixODBC driver manager), needed by pyodbc: $hint"
  fi
  if [ -n "${PYTHON:-}" ] && [ -f "$CONFIG_DIR/dicomgate.toml" ]; then
    local odbc
    odbc=$("$PYTHON" "$HERE/install_lib.py" odbc-check "$CONFIG_DIR/dicomgate.toml" 2>&1) ||
      problem "$odbc"
  fi
  check_disk
  if ((SYSTEMD)); then
    is_root || problem "root (sudo), to install the systemd unit and the service user"
    command -v systemctl >/dev/null || problem "systemd (systemctl): or use --no-systemd"
  fi
  if ((${#PROBLEMS[@]})); then
    echo "install.sh: missing prerequisites (nothing was changed):" >&2
    printf '  - %s\n' "${PROBLEMS[@]}" >&2
    exit 3
  fi
}

free_kib() { local d=$1; while [ ! -e "$d" ]; do d=$(dirname "$d"); done
             df -Pk "$d" | awk 'NR==2 {print $4}'; }
check_disk() {
  local wheels need db_kib
  wheels=$(du -sk "$HERE/wheels" | awk '{print $1}')
  need=$((wheels * 4 + 51200))    # a venv unpacks to ~3x its wheels
  (( $(free_kib "$PREFIX") >= need )) ||
    problem "disk: $((need / 1024)) MiB free under $PREFIX (have $(( $(free_kib "$PREFIX") / 1024 )) MiB)"
  db_kib=0
  [ -f "$STATE_DIR/state.db" ] && db_kib=$(du -sk "$STATE_DIR/state.db" | awk '{print $1}')
  need=$((db_kib + 10240))  # the state backup taken before a migration
  (( $(free_kib "$STATE_DIR") >= need )) ||
    problem "disk: $((need / 1024)) MiB free under $STATE_DIR for the state backup"
}

# ---- releases ----------------------------------------------------------------------------
current_release() { readlink -f "$PREFIX/current" 2>/dev/null || true; }

# Point LINK at TARGET with one rename(2): readers see the old or the new one, never none.
switch_link() {
  ln -sfn "$2" "$PREFIX/.$1.tmp"
  mv -T "$PREFIX/.$1.tmp" "$PREFIX/$1"
}

build_release() {
  local stamp; stamp=$(date -u +%Y%m%dT%H%M%SZ)
  REL="$PREFIX/releases/$(manifest version)-$stamp"
  local n=1; while [ -e "$REL" ]; do REL="$PREFIX/releases/$(manifest version)-$stamp.$n"; n=$((n+1)); done
  say "building release $REL (Python $PYVER at $PYTHON)"
  install -d -m 0755 "$PREFIX" "$PREFIX/releases" "$PREFIX/bin"
  trap 'rm -rf "$REL"' ERR
  "$PYTHON" -m venv --without-pip "$REL/venv"
  local pipwhl; pipwhl=$(ls "$HERE"/wheels/pip-*.whl)
  # The host's pip settings (indexes, constraints) must not apply: the bundle is the index.
  env $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/-u \1/p') PIP_CONFIG_FILE=/dev/null \
    "$REL/venv/bin/python" "$pipwhl/pip" install --quiet --no-index --no-cache-dir \
    --disable-pip-version-check --no-input --find-links "$HERE/wheels" --require-hashes \
    -r "$HERE/locks/cp${PYVER/./}.txt" || { rm -rf "$REL"; die "installing the wheels failed"; }
  cp -R "$HERE/conf" "$HERE/systemd" "$HERE/docs" "$REL/"
  cp "$HERE/MANIFEST.json" "$HERE/install.sh" "$HERE/install_lib.py" "$REL/"
  install -d -m 0755 "$REL/.install"
  "$REL/venv/bin/dicomgate" version >/dev/null || { rm -rf "$REL"; die "the new release does not run"; }
  trap - ERR
}

prune_releases() {
  local keep_cur keep_prev r n=0
  keep_cur=$(current_release); keep_prev=$(readlink -f "$PREFIX/previous" 2>/dev/null || true)
  for r in $(ls -1dt "$PREFIX"/releases/*/ 2>/dev/null); do
    r=${r%/}; n=$((n+1))
    [ "$r" = "$keep_cur" ] || [ "$r" = "$keep_prev" ] || ((n <= KEEP)) && continue
    rm -rf "$r"; say "removed old release $r"
  done
}

# ---- config, user, unit ----------------------------------------------------------------
ensure_user() {
  is_root || return 0
  [ "$SVC_USER" = root ] && return 0
  id -u "$SVC_USER" >/dev/null 2>&1 ||
    useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin "$SVC_USER"
}

install_config() {
  local cfg="$CONFIG_DIR/dicomgate.toml" grp
  grp=$(id -gn "$SVC_USER" 2>/dev/null || echo root)
  install -d -m 0750 "$CONFIG_DIR"
  is_root && chgrp "$grp" "$CONFIG_DIR"
  if [ ! -e "$cfg" ]; then
    install -m 0640 "$REL/conf/dicomgate.toml" "$cfg"
    is_root && chgrp "$grp" "$cfg"
    sed -i "s#^state_dir = \"/var/lib/dicomgate\"#state_dir = \"$STATE_DIR\"#" "$cfg"
    say "wrote $cfg (the commented example): edit it before starting"
    FIRST_CONFIG=1
    return
  fi
  # Never overwrite the operator's file: the new example goes beside it, with the new keys.
  local old_example="$cfg"
  [ -f "$(current_release)/conf/dicomgate.toml" ] && old_example="$(current_release)/conf/dicomgate.toml"
  install -m 0644 "$REL/conf/dicomgate.toml" "$cfg.example"
  "$PYTHON" "$REL/install_lib.py" new-keys "$old_example" "$cfg.example" > "$cfg.new-keys"
  if [ -s "$cfg.new-keys" ]; then
    say "$cfg kept; the new example is $cfg.example; keys new in it ($cfg.new-keys):"
    sed 's/^/    /' "$cfg.new-keys"
  else
    say "$cfg kept (the example has no new keys; it is at $cfg.example)"
  fi
}

install_state_dir() {
  install -d -m 0700 "$STATE_DIR"
  is_root && chown "$SVC_USER:$(id -gn "$SVC_USER")" "$STATE_DIR"
  return 0
}

install_unit() {
  ((SYSTEMD)) || return 0
  "$PYTHON" "$REL/install_lib.py" render-unit "$REL/systemd/dicomgate.service" \
    --prefix "$PREFIX" --config-dir "$CONFIG_DIR" --state-dir "$STATE_DIR" --user "$SVC_USER" \
    > "/etc/systemd/system/$UNIT.service.tmp"
  mv -f "/etc/systemd/system/$UNIT.service.tmp" "/etc/systemd/system/$UNIT.service"
  systemctl daemon-reload
}

# `dicomgate` on root's PATH, as the operator types it (systemd mode: a real host).
link_command() {
  ((SYSTEMD)) || return 0
  ln -sfn "$PREFIX/bin/dicomgate" /usr/local/bin/.dicomgate.tmp
  mv -T /usr/local/bin/.dicomgate.tmp /usr/local/bin/dicomgate
  if [ -d "$PREFIX/venv" ]; then
    say "the layout of older installs ($PREFIX/venv) is no longer used: remove it once this version runs"
  fi
}

service_active() { ((SYSTEMD)) && systemctl is-active --quiet "$UNIT"; }
stop_service() { WAS_ACTIVE=0; if service_active; then say "stopping $UNIT"; systemctl stop "$UNIT"; WAS_ACTIVE=1; fi; }
start_service() {
  ((SYSTEMD)) && ((WAS_ACTIVE)) || return 0
  say "starting $UNIT"
  systemctl start "$UNIT" && sleep 3 && systemctl is-active --quiet "$UNIT"
}

# ---- state -------------------------------------------------------------------------------
# "<code schema> <store schema or -> <state db path>" as the given release sees them.
schema_info() {
  dg "$1" version --json 2>/dev/null | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin)
print(d["schema"]["code"], d["schema"].get("store") or "-", d.get("state_db") or "-")'
}

restore_state() {  # restore_state BACKUP DB
  as_user "$PYTHON" "$REL/install_lib.py" restore "$1" "$2"
}

upgrade_state() {
  local old=$1 code store db
  local info; info=$(schema_info "$REL") || die "the new release cannot read $CONFIG_DIR/dicomgate.toml"
  read -r code store db <<< "$info"
  OLD_SCHEMA=$store NEW_SCHEMA=$code DB=$db BACKUP=""
  [ "$db" != - ] && [ -f "$db" ] || { say "no state store yet: nothing to migrate"; return 0; }
  BACKUP="$(dirname "$db")/backups/state-before-$(basename "$REL")-schema$store.sqlite3"
  as_user "$PYTHON" "$REL/install_lib.py" backup "$db" "$BACKUP" ||
    { start_service || true; fail "the state backup failed: nothing was changed"; }
  say "state backed up (schema $store) to $BACKUP"
  if [ "$store" = "$code" ]; then
    say "schema $code unchanged: no migration"
    return 0
  fi
  local out rc=0
  out=$(as_user env DICOMGATE_CONFIG="$CONFIG_DIR/dicomgate.toml" "$REL/venv/bin/dicomgate" \
        migrate --json --backup-dir "$(dirname "$BACKUP")" 2>"$REL/.install/migrate.err") || rc=$?
  if ((rc == 3)); then  # a daemon we did not stop holds the store: it was not touched
    sed 's/^/    /' "$REL/.install/migrate.err" >&2
    fail "dicomgate migrate refused: a dicomgate daemon still runs on $(dirname "$db")"
  elif ((rc)); then
    sed 's/^/    /' "$REL/.install/migrate.err" >&2
    restore_state "$BACKUP" "$db"
    start_service || true
    fail "dicomgate migrate failed (schema $store -> $code): state restored from $BACKUP, $(basename "$old") left in place"
  fi
  # migrate copied the store too; ours (named after the release) is the one rollback uses.
  local dup; dup=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("backup") or "")' 2>/dev/null || true)
  [ -n "$dup" ] && [ "$dup" != "$BACKUP" ] && rm -f "$dup"
  say "state migrated: schema $store -> $code"
}

fail() { rm -rf "$REL"; die "$1; the new release was removed"; }

# ---- the three modes ---------------------------------------------------------------------
do_install() {
  [ -f "$HERE/MANIFEST.json" ] || die "run install.sh from an unpacked bundle (build one with ./scripts/bundle)" 2
  load_settings
  check_prerequisites
  local old; old=$(current_release)
  build_release
  ensure_user
  install_state_dir
  FIRST_CONFIG=0
  install_config
  if ! dg "$REL" check-config >/dev/null 2>"$REL/.install/check-config.err"; then
    if [ -z "$old" ] && ((FIRST_CONFIG)); then
      say "the example config does not pass check-config yet (edit it):"; sed 's/^/    /' "$REL/.install/check-config.err"
    else
      sed 's/^/    /' "$REL/.install/check-config.err" >&2
      fail "check-config failed on the new version: ${old:+$(basename "$old") still runs}"
    fi
  fi
  stop_service
  upgrade_state "$old"
  if ! dg "$REL" check-config >/dev/null 2>"$REL/.install/check-config.err" && ! ((FIRST_CONFIG)); then
    [ -n "$BACKUP" ] && [ "$OLD_SCHEMA" != "$NEW_SCHEMA" ] && restore_state "$BACKUP" "$DB"
    start_service || true
    fail "check-config failed on the new version after migrating (state restored)"
  fi
  printf 'previous=%s\nprevious_schema=%s\nschema=%s\nstate_db=%s\nstate_backup=%s\n' \
    "${old:-}" "${OLD_SCHEMA:-}" "${NEW_SCHEMA:-}" "${DB:-}" "${BACKUP:-}" > "$REL/.install/record"
  [ -n "$old" ] && switch_link previous "releases/$(basename "$old")"
  switch_link current "releases/$(basename "$REL")"
  ln -sfn ../current/venv/bin/dicomgate "$PREFIX/bin/dicomgate.tmp"
  mv -T "$PREFIX/bin/dicomgate.tmp" "$PREFIX/bin/dicomgate"
  save_settings
  install_unit
  link_command
  say "switched $PREFIX/current -> $REL ${old:+(was $old)}"
  if ! start_service; then
    say "the new version did not start: rolling back"
    do_rollback
    exit 1
  fi
  prune_releases
  say "installed: $("$REL/venv/bin/dicomgate" --version)"
  if [ -z "$old" ]; then
    say "next: edit $CONFIG_DIR/dicomgate.toml, then $PREFIX/bin/dicomgate check-config"
    if ((SYSTEMD)); then say "      and systemctl enable --now $UNIT"
    else say "      and run $PREFIX/bin/dicomgate run under your own supervisor (--no-systemd)"; fi
  fi
}

do_rollback() {
  load_settings
  local cur prev rec prev_schema schema db backup
  cur=$(current_release)
  [ -n "$cur" ] || die "nothing is installed under $PREFIX"
  rec="$cur/.install/record"
  prev=$(sed -n 's/^previous=//p' "$rec" 2>/dev/null)
  [ -n "$prev" ] && [ -d "$prev" ] || die "no previous release to roll back to (current: $cur)"
  prev_schema=$(sed -n 's/^previous_schema=//p' "$rec"); schema=$(sed -n 's/^schema=//p' "$rec")
  db=$(sed -n 's/^state_db=//p' "$rec"); backup=$(sed -n 's/^state_backup=//p' "$rec")
  PYTHON=$(readlink -f "$prev/venv/bin/python"); REL=$prev
  stop_service
  local state_msg="state kept as it is (schema ${schema:-?}, unchanged by the upgrade)"
  if [ -n "$prev_schema" ] && [ "$prev_schema" != - ] && [ "$prev_schema" != "$schema" ]; then
    [ -f "$backup" ] || die "the upgrade changed the schema ($prev_schema -> $schema) but its backup $backup is gone: not rolling back"
    local safety; safety="$(dirname "$backup")/state-at-rollback-$(date -u +%Y%m%dT%H%M%SZ)-schema$schema.sqlite3"
    as_user "$PYTHON" "$prev/install_lib.py" backup "$db" "$safety"
    restore_state "$backup" "$db"
    state_msg="state restored from $backup (schema $prev_schema, taken at the upgrade); the
    state as it was just now (schema $schema) is kept in $safety: work recorded since the
    upgrade is only there (the report poller re-reads the view from the restored watermark)"
  fi
  switch_link current "releases/$(basename "$prev")"
  local before; before=$(sed -n 's/^previous=//p' "$prev/.install/record" 2>/dev/null)
  if [ -n "$before" ] && [ -d "$before" ]; then switch_link previous "releases/$(basename "$before")"; else rm -f "$PREFIX/previous"; fi
  touch "$cur/.install/rolled-back"
  install_unit
  WAS_ACTIVE=${WAS_ACTIVE:-0}
  start_service || die "rolled back to $prev but $UNIT did not start: journalctl -u $UNIT"
  say "rolled back: $PREFIX/current -> $prev (was $cur)"
  say "$state_msg"
  say "now: $("$prev/venv/bin/dicomgate" --version)"
}

# The bundle's .debs this host lacks or has older (apt and dpkg refuse to downgrade).
wanted_debs() {
  local deb pkg ver have
  WANTED=()
  for deb in "$HERE"/debs/*.deb; do
    pkg=$(dpkg-deb -f "$deb" Package); ver=$(dpkg-deb -f "$deb" Version)
    have=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null || true)
    have=${have#install ok installed }; [[ "$have" == *' '* ]] && have=""
    if [ -z "$have" ] || dpkg --compare-versions "$have" lt "$ver"; then WANTED+=("$deb"); fi
  done
}

do_debs() {
  [ -d "$HERE/debs" ] || die "this bundle has no debs/ (build it with ./scripts/bundle --debs)" 2
  is_root || die "run as root" 2
  local pass
  # dpkg orders the given set itself, except a Pre-Depends on a package later in the same
  # call (python3 on python3-minimal on python3.11-minimal): each pass installs what the one
  # before left for that reason.
  for pass in 1 2 3 4 5; do
    wanted_debs
    if ((${#WANTED[@]} == 0)); then
      dpkg --configure -a
      say "every package of debs/ is installed"; return 0
    fi
    say "installing ${#WANTED[@]} packages from debs/ (pass $pass, no download)"
    DEBIAN_FRONTEND=noninteractive dpkg -i "${WANTED[@]}" || true
  done
  die "dpkg -i could not install: ${WANTED[*]##*/} (a dependency this host lacks is named above)"
}

case "$MODE" in
  install) do_install ;;
  rollback) do_rollback ;;
  check) load_settings; check_prerequisites; say "prerequisites OK (Python $PYVER at $PYTHON)" ;;
  debs) do_debs ;;
esac
