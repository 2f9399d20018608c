# shellcheck shell=bash
# Sourced by the scripts that need a real MLflow tracking server
# (interop-mlflow.sh, torture-kill9.sh): creates a Python venv with MLflow
# from PyPI, kept between runs.
#
#   source scripts/lib/mlflow-venv.sh
#   ensure_mlflow_venv "$root/target/venv-mlflow" "${RANKLOG_MLFLOW_SPEC:-mlflow[auth]}"
#
# The caller defines `say` (its own message prefix). Installs python3-venv
# with apt-get when Python cannot make venvs (a fresh CI machine).

ensure_mlflow_venv() {
    local venv=$1 spec=$2
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        say "installing python3-venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    fi
    if ! "$venv/bin/python" -c 'import mlflow, mlflow.server.auth' 2>/dev/null; then
        say "creating $venv with $spec"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q "$spec"
    fi
    say "mlflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
}
