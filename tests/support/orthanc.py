"""What tests ask of an Orthanc peer beyond what the demo needs: one instance's file, or
its removal."""

from __future__ import annotations

from dicomgate.sandbox.orthanc import Orthanc, SandboxError


class PeerOrthanc(Orthanc):
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
