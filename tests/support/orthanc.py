"""What tests ask of an Orthanc peer beyond what the demo needs: one instance's file, or
its removal; and a stop that does not wait.

Orthanc's graceful stop takes 3-4 s (its HTTP and DICOM servers poll for the stop flag);
no test tests Orthanc's own shutdown, so a test peer is killed. Its SQLite index is
durable against SIGKILL: a peer started again on the same directory finds what it held.
"""

from __future__ import annotations

from dicomgate.sandbox.orthanc import Orthanc, SandboxError


class PeerOrthanc(Orthanc):
    def stop(self, timeout: float = 15.0) -> None:
        """SIGKILL (the peer crashes, as far as anyone talking to it can tell)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        self.proc = None

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
