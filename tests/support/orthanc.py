"""What tests ask of an Orthanc peer beyond what the demo needs: one instance's file, or
its removal; and a stop that does not wait.

Orthanc's graceful stop takes 3-4 s (its HTTP and DICOM servers poll for the stop flag);
no test tests Orthanc's own shutdown, so a test peer is killed. Its SQLite index is
durable against SIGKILL: a peer started again on the same directory finds what it held.
"""

from __future__ import annotations

from typing import Any

from dicomgate.sandbox.orthanc import Orthanc, SandboxError

# Orthanc as a test peer; a test's `extra` still wins over these.
TEST_SETTINGS: dict[str, Any] = {
    # Orthanc keeps an association it opened (the C-STORE sub-operations of a C-MOVE) open
    # 5 s for reuse: a Portal AET that stops afterwards then drains it for its full grace
    # time. Closing at once is also what many PACSes do.
    "DicomAssociationCloseDelay": 0,
    "SaveJobs": False,  # nothing a test needs survives a restart
}


class PeerOrthanc(Orthanc):
    def config(self) -> dict[str, Any]:
        return {**super().config(), **TEST_SETTINGS, **self.extra}

    def stop(self, timeout: float = 15.0) -> None:
        """SIGKILL (the peer crashes, as far as anyone talking to it can tell)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        self.proc = None

    def empty(self) -> None:
        """Delete every patient (and so everything) it holds, as a new peer would be."""
        for patient in self.get("/patients"):
            self.delete(f"/patients/{patient}")
        left = self.get("/statistics")["CountInstances"]
        if left:
            raise SandboxError(f"Orthanc {self.aet} still holds {left} instances")

    def instance_file(self, sop_uid: str) -> bytes:
        for item in self.post("/tools/lookup", sop_uid) or []:
            if item.get("Type") == "Instance":
                return self._check(self.session.get(f"{self.url}/instances/{item['ID']}/file",
                                                    timeout=60)).content
        raise SandboxError(f"instance {sop_uid} not in Orthanc {self.aet}")

    def delete_instance(self, sop_uid: str) -> None:
        for item in self.post("/tools/lookup", sop_uid) or []:
            if item.get("Type") == "Instance":
                self.delete(f"/instances/{item['ID']}")
