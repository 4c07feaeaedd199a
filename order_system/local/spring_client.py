"""A real Spring Kafka client beside this package: the Java program in ``interop/spring``.

The program uses Spring Kafka's ``KafkaTemplate`` and listener container with Spring's Jackson 3
JSON serializer and deserializer, the way a Java service on the same topic would. Its jars are
fetched once from Maven Central with Maven into ``<home>/spring-kafka-<version>/libs`` (a folder
of their own, never on the broker's classpath); the program is compiled once with ``javac``
into a folder named after a hash of its source and of the pinned versions, so later runs need
neither the network nor the compiler.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .broker import KAFKA_VERSION, LocalBroker
from ..config import Settings, default_home
from ..domain.errors import OrderSystemError
from .maven import Say, fetch_jars, quiet

SPRING_KAFKA_VERSION = "4.1.2"
JACKSON_VERSION = "3.3.0"  # every Jackson 3 artifact (tools.jackson.*)
SLF4J_VERSION = "1.7.36"  # the slf4j API kafka-clients uses; slf4j-simple logs warnings to stderr
SOURCE_DIR = Path(__file__).resolve().parents[2] / "interop" / "spring"
MAIN_CLASS = "orderinterop.SpringInterop"
PARTITIONS_CLASS = "orderinterop.JavaPartitions"  # needs only kafka-clients: run on the broker's jars
JAVA_TYPE = "orderinterop.OrderEvent"  # the class name the Java producer puts in __TypeId__

ARTIFACTS = [
    ("org.springframework.kafka", "spring-kafka", SPRING_KAFKA_VERSION),
    ("org.apache.kafka", "kafka-clients", KAFKA_VERSION),  # the broker's version, not Spring's default
    ("tools.jackson.core", "jackson-databind", JACKSON_VERSION),
    ("org.slf4j", "slf4j-simple", SLF4J_VERSION),
]
MANAGED = [
    ("tools.jackson.core", "jackson-core", JACKSON_VERSION),
    ("org.slf4j", "slf4j-api", SLF4J_VERSION),
]


class JavaClientError(OrderSystemError):
    """The Spring Kafka interop program could not be fetched, compiled or run."""


class SpringClient:
    """Fetch, compile and run the Spring Kafka interop program (``interop/spring``)."""

    def __init__(self, home: Path | None = None, java: str = "java", javac: str = "javac", mvn: str = "mvn") -> None:
        self.home = Path(home) if home else default_home()
        self.java, self.javac, self.mvn = java, javac, mvn
        self.jar_dir = self.home / f"spring-kafka-{SPRING_KAFKA_VERSION}"
        self.libs_dir = self.jar_dir / "libs"

    # ---- set-up -------------------------------------------------------------------------

    def sources(self) -> list[Path]:
        return sorted(SOURCE_DIR.rglob("*.java"))

    def source_hash(self) -> str:
        """A hash of the Java sources and the pinned versions: the compiled classes' folder name."""
        digest = hashlib.sha256(repr((ARTIFACTS, MANAGED)).encode())
        for path in self.sources():
            digest.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]

    @property
    def classes_dir(self) -> Path:
        return self.jar_dir / f"classes-{self.source_hash()}"

    def ready(self) -> bool:
        """Whether the jars are fetched and this source is compiled (no network or javac needed)."""
        return (self.classes_dir / ".complete").exists()

    def prepare(self, say: Say = quiet) -> Path:
        """Fetch the jars (once) and compile the program (once per source); return the classes folder."""
        if self.ready():
            return self.classes_dir
        if not self.sources():
            raise JavaClientError(f"no Java sources in {SOURCE_DIR}: the interop program comes with the repository")
        for tool in (self.java, self.javac):
            if not shutil.which(tool):
                raise JavaClientError(f"`{tool}` (JDK 17 or newer) was not found; the Spring interop program needs it")
        try:
            fetch_jars(self.jar_dir, ARTIFACTS, managed=MANAGED, mvn=self.mvn, say=say,
                       what=f"Spring Kafka {SPRING_KAFKA_VERSION} with Jackson {JACKSON_VERSION}")
        except OrderSystemError as exc:
            raise JavaClientError(str(exc)) from exc
        target = self.classes_dir
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=self.jar_dir))  # own folder: runs may race
        say(f"Compiling the Spring interop program ({len(self.sources())} files) ...")
        done = subprocess.run(
            [self.javac, "-encoding", "UTF-8", "--release", "17", "-nowarn", "-d", str(staging),
             "-cp", f"{self.libs_dir}/*", *map(str, self.sources())],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise JavaClientError(f"javac failed:\n{(done.stdout + done.stderr)[-3000:]}")
        (staging / ".complete").write_text("compiled\n")
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another run compiled the same source meanwhile
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # ---- running ------------------------------------------------------------------------

    def command(self, *args: str, main: str = MAIN_CLASS, libs: Path | None = None) -> list[str]:
        """The java command line running ``main`` with ``args`` (on the Spring jars unless ``libs``)."""
        return [
            self.java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.logFile=System.err",
            "-cp", f"{self.classes_dir}:{libs or self.libs_dir}/*", main, *args,
        ]

    def _run(self, command: list[str], stdin: str, timeout: float) -> str:
        self.prepare()
        try:
            done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # its captured output is bytes even with text=True
            raise JavaClientError(f"{' '.join(command[-6:])} did not finish within {timeout:.0f}s; "
                                  f"stderr:\n{(exc.stderr or b'').decode(errors='replace')[-3000:]}") from exc
        if done.returncode != 0:
            raise JavaClientError(f"{' '.join(command[-6:])} exited with {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    def run(self, *args: str, stdin: str = "", timeout: float = 120.0) -> list[dict[str, Any]]:
        """Run the Spring program; return the JSON lines it printed. Raises ``JavaClientError`` on failure."""
        out = self._run(self.command(*args), stdin, timeout)
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def partitions(self, keys: Sequence[str], partition_counts: Sequence[int]) -> dict[int, list[int]]:
        """Kafka's own Java partition of each key (its UTF-8 bytes) for each partition count, computed
        by ``BuiltInPartitioner`` from the local broker's jars."""
        if any("\n" in key or "\r" in key for key in keys):
            raise ValueError("keys are passed one per line: they may not contain line breaks")
        libs = LocalBroker(home=self.home).fetch_jars()
        command = self.command(*map(str, partition_counts), main=PARTITIONS_CLASS, libs=libs)
        lines = self._run(command, "".join(k + "\n" for k in keys), 60.0).splitlines()
        if len(lines) != len(keys):
            raise JavaClientError(f"expected {len(keys)} lines of partitions, got {len(lines)}")
        columns = list(zip(*(map(int, line.split()) for line in lines)))
        return {n: list(column) for n, column in zip(partition_counts, columns)}

    def produce_tutorial(self, settings: Settings, order_ids: Sequence[str], cancel_every: int = 0,
                         steps: int = 4) -> list[dict[str, Any]]:
        """Publish the tutorial's lifecycle (its first ``steps`` events) for each order id with
        ``KafkaTemplate`` and Spring's JSON serializer, keyed by order id, interleaved across orders.
        Every ``cancel_every``-th order is cancelled instead. One row per record, in sending order:
        orderId, customerId, status, description, timestamp, partition, offset."""
        if any(not o or "\n" in o or "\r" in o for o in order_ids):
            raise ValueError("order ids are passed one per line: they must be non-empty, without line breaks")
        return self.run("produce", settings.bootstrap_servers, settings.topic, str(cancel_every), str(steps),
                        stdin="".join(o + "\n" for o in order_ids))

    def listen(self, settings: Settings, group_id: str, count: int, type_: str = "versioned") -> list[dict[str, Any]]:
        """Read ``count`` records (waiting up to 60 s) with a Spring listener container and Spring's JSON
        deserializer into a Java record with our fields (``type_="versioned"``) or the tutorial's (``"tutorial"``);
        one row per record: partition, offset, key, typeId header and the event as Java read it."""
        return self.run("listen", settings.bootstrap_servers, settings.topic, group_id, str(count), "60000", type_,
                        timeout=120.0)
