"""Fetch pinned jars from Maven Central with Maven, once, into a folder of their own.

The broker's jars (``broker.py``) and the Spring Kafka interop program's jars
(``spring_client.py``) both come this way: a throw-away ``pom.xml`` lists the pinned
artifacts, ``mvn dependency:copy-dependencies`` copies them and their runtime dependencies
into ``<folder>/libs``, and a ``.complete`` marker makes later calls return at once, offline.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ..domain.errors import OrderSystemError

Artifact = tuple[str, str, str]  # (groupId, artifactId, version)
Say = Callable[[str], None]


class MavenError(OrderSystemError):
    """Maven is missing or could not fetch the jars."""


def jars_ready(folder: Path) -> bool:
    """Whether ``folder/libs`` holds a complete earlier fetch."""
    return (folder / "libs" / ".complete").exists()


def fetch_jars(folder: Path, artifacts: Sequence[Artifact], *, what: str, mvn: str = "mvn",
               managed: Sequence[Artifact] = (), say: Say = lambda line: None) -> Path:
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


def _dependencies(artifacts: Sequence[Artifact]) -> str:
    return "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in artifacts
    )


def _pom(name: str, artifacts: Sequence[Artifact], managed: Sequence[Artifact]) -> str:
    management = (f"<dependencyManagement><dependencies>{_dependencies(managed)}</dependencies>"
                  "</dependencyManagement>") if managed else ""
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>order-system</groupId><artifactId>{name}</artifactId><version>1</version>"
        f"<packaging>pom</packaging>{management}<dependencies>{_dependencies(artifacts)}</dependencies></project>\n"
    )
