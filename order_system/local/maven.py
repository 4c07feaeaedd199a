"""Java and Kafka's jars: check the tools, fetch pinned jars from Maven Central, once, into a
folder of their own, and size the JVM.

The broker's jars (``broker.py``) and the Spring Kafka interop program's jars
(``spring_client.py``) both come this way: a throw-away ``pom.xml`` lists the pinned
artifacts, ``mvn dependency:copy-dependencies`` copies them and their runtime dependencies
into ``<folder>/libs``, and a ``.complete`` marker makes later calls return at once, offline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ..domain.errors import BrokerError, OrderSystemError

KAFKA_VERSION = "4.3.1"
SCALA_VERSION = "2.13"
# Kafka 4.3 ships slf4j 1.7 and log4j-core 2.25.4: this bridge routes the former to the latter.
LOG4J_VERSION = "2.25.4"
DOCKER_HINT = "or, with Docker, run `docker compose up -d` and set KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092"

Artifact = tuple[str, str, str]  # (groupId, artifactId, version)
Say = Callable[[str], None]


class MavenError(OrderSystemError):
    """Maven is missing or could not fetch the jars."""


def quiet(_: str) -> None:
    """A ``Say`` that says nothing."""


def jars_ready(folder: Path) -> bool:
    """Whether ``folder/libs`` holds a complete earlier fetch."""
    return (folder / "libs" / ".complete").exists()


def fetch_jars(folder: Path, artifacts: Sequence[Artifact], *, what: str, mvn: str = "mvn",
               managed: Sequence[Artifact] = (), say: Say = quiet) -> Path:
    """Copy ``artifacts`` and their runtime dependencies into ``folder/libs`` (once); return it.

    ``managed`` pins versions of transitive dependencies (Maven's dependencyManagement).
    Raises ``MavenError`` with the tail of Maven's output when it fails.
    """
    libs = folder / "libs"
    if jars_ready(folder):
        return libs
    if not shutil.which(mvn):
        raise MavenError(f"`{mvn}` (Apache Maven) was not found; it fetches {what} the first time")
    say(f"Fetching {what} from Maven Central (first time only) ...")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pom.xml").write_text(_pom(folder.name, artifacts, managed))
    staging = folder / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [mvn, "-B", "-q", "-f", str(folder / "pom.xml"), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise MavenError(f"Maven could not fetch {what}:\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    count = len(list(libs.glob("*.jar")))
    (libs / ".complete").write_text(f"{count} jars\n")
    say(f"Fetched {count} jars into {libs}")
    return libs


def _pom(name: str, artifacts: Sequence[Artifact], managed: Sequence[Artifact]) -> str:
    def dependencies(listed: Sequence[Artifact]) -> str:
        return "<dependencies>" + "".join(f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}"
                                          "</version></dependency>" for g, a, v in listed) + "</dependencies>"

    management = f"<dependencyManagement>{dependencies(managed)}</dependencyManagement>" if managed else ""
    return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            f"<groupId>order-system</groupId><artifactId>{name}</artifactId><version>1</version>"
            f"<packaging>pom</packaging>{management}{dependencies(artifacts)}</project>\n")


def check_tools(java: str, mvn: str, need_maven: bool, what: str) -> None:
    """``BrokerError`` saying what to install unless Java 17+ (and, when jars are missing, Maven) is there."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
        match = re.search(r'version "(?:1\.)?(\d+)', out.stderr + out.stdout)  # Java 8 and older say "1.8"
    except (OSError, subprocess.SubprocessError):  # not found, not runnable, or hanging
        match = None
    if match is None:
        raise BrokerError(f"`{java}` (Java 17 or newer) was not found: install OpenJDK 17+, {DOCKER_HINT}")
    major = int(match.group(1))
    if major < 17:
        raise BrokerError(f"`{java}` is Java {major}; {what} needs 17 or newer: {DOCKER_HINT}")
    if need_maven and not shutil.which(mvn):
        raise BrokerError(f"`{mvn}` (Apache Maven) was not found; it fetches Kafka's jars the first time. "
                          f"Install Maven, {DOCKER_HINT}")


def heap_bytes(heap: str) -> int:
    """A JVM heap size such as ``512m`` or ``1g`` in bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)", heap.strip().lower())
    if not match:
        raise BrokerError(f"heap size {heap!r} is not like 512m or 1g")
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]


def cleaner_buffer_bytes(heap: str) -> int:
    """The log cleaner's dedupe buffer for a heap: an eighth of it, at least 8 MB (Kafka's default is
    128 MB whatever the heap, which killed a 256 MB broker with OutOfMemoryError)."""
    return max(heap_bytes(heap) // 8, 8 << 20)

