#!/usr/bin/env bash
# Install dicomgate as a systemd service on a front-end host (run as root from a checkout).
#   sudo ./scripts/install.sh            install or upgrade; keeps an existing config
# Then edit /etc/dicomgate/dicomgate.toml, `dicomgate check-config`, and
#   systemctl enable --now dicomgate
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 2; }

PREFIX=/opt/dicomgate
apt-get install -y -q --no-install-recommends python3 python3-venv unixodbc libsqliteodbc \
  odbc-postgresql fonts-wqy-microhei >/dev/null

id -u dicomgate >/dev/null 2>&1 || \
  useradd --system --home-dir /var/lib/dicomgate --shell /usr/sbin/nologin dicomgate

install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade .
install -m 0644 README.md "$PREFIX/README.md"
ln -sf "$PREFIX/venv/bin/dicomgate" /usr/local/bin/dicomgate

install -d -m 0750 -g dicomgate /etc/dicomgate
if [ ! -e /etc/dicomgate/dicomgate.toml ]; then
  install -m 0640 -g dicomgate conf/dicomgate.toml /etc/dicomgate/dicomgate.toml
  echo "install.sh: wrote /etc/dicomgate/dicomgate.toml: edit it before starting"
fi
install -d -m 0700 -o dicomgate -g dicomgate /var/lib/dicomgate

install -m 0644 systemd/dicomgate.service /etc/systemd/system/dicomgate.service
systemctl daemon-reload 2>/dev/null || true
echo "install.sh: installed $("$PREFIX/venv/bin/dicomgate" version)."
echo "next: sudo -u dicomgate dicomgate check-config && systemctl enable --now dicomgate"
