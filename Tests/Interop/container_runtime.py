"""The execstream.v1 container API as a sandbox runtime sees it (grpcio), shared by the tests
that declare containers while the server runs."""
import subprocess

from containerd_client import Stream


class Runtime:
    """A sandbox runtime's view: the container API plus one Stream per channel id."""

    def __init__(self, channel, protos):
        self.channel = channel
        self.protos = protos
        self.messages, stubs = protos[3], protos[4]
        self.containers = stubs.ContainersStub(channel)

    def create(self, container_id: str, command: list, *, stdin=False, stdin_once=False, tty=False, **fields):
        main = self.messages.MainProcess(command=command, stdin=stdin, stdin_once=stdin_once, tty=tty)
        spec = self.messages.ContainerSpec(id=container_id, main=main, **fields)
        return self.containers.Create(self.messages.CreateContainerRequest(spec=spec), timeout=10).container

    def start(self, container_id: str):
        return self.containers.Start(self.messages.StartContainerRequest(id=container_id), timeout=10).container

    def stop(self, container_id: str, timeout_seconds: int):
        return self.containers.Stop(self.messages.StopContainerRequest(id=container_id, timeout_seconds=timeout_seconds), timeout=30).container

    def remove(self, container_id: str, timeout_seconds: int = 0):
        self.containers.Remove(self.messages.RemoveContainerRequest(id=container_id, timeout_seconds=timeout_seconds), timeout=30)

    def wait(self, container_id: str):
        return self.containers.Wait(self.messages.WaitContainerRequest(id=container_id), timeout=60).container

    def ids(self) -> list:
        return [c.spec.id for c in self.containers.List(self.messages.ListContainersRequest(), timeout=10).containers]

    def stream(self, stream_id: str, **kwargs) -> Stream:
        return Stream(self.channel, self.protos, stream_id, **kwargs)


def expected_output(command: str) -> bytes:
    return subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
