#!/usr/bin/env bash
# The test command: installs the real peers the end-to-end tests drive (OpenSSH server and
# client, the AWS CLI), then runs every test of the workspace. Tests that need a peer fail loudly when it is
# missing; they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v scp >/dev/null 2>&1 || missing+=(openssh-client)
# curl is the real SOCKS5 client of the `rssm socks` tests.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# tinyproxy is the real HTTP CONNECT proxy of the `--proxy` / HTTPS_PROXY tests.
[ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
# busybox is the whole userland of the `rssm cp` test of a minimal (Alpine-like) target.
[ -x /usr/bin/busybox ] || missing+=(busybox)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The real AWS CLI (PyPI), for the simulator's API tests and the drop-in plugin tests.
if ! aws --version >/dev/null 2>&1; then
  venv="${RSSM_TEST_VENV:-$PWD/target/awscli-venv}"
  if [ ! -x "$venv/bin/aws" ]; then
    echo "== installing the AWS CLI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q awscli
  fi
  export PATH="$venv/bin:$PATH"
fi

# moto in server mode (PyPI): the EC2/VPC/IAM/STS APIs `rssm doctor` is tested against. The
# tests start `moto_server` themselves and build each scenario with boto3 (moto's dependency).
if ! moto_server --help >/dev/null 2>&1; then
  venv="${RSSM_MOTO_VENV:-$PWD/target/moto-venv}"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "== installing moto into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]'
  fi
  export PATH="$venv/bin:$PATH"
fi

# Every § reference in the code names a heading of docs/protocol.md or docs/doctor.md.
bash scripts/check-doc-refs.sh

cargo test --workspace --locked "$@"

# The install cost users pay: the release binary's size, under its target.
bash scripts/binary-size.sh
