"""Which of the PACS's studies with an AccessionNumber are this hospital's exam.

Accession numbers are unique only within a hospital; a hospital group may share one PACS
(gateway.group_hospital_ids). The PACS's Issuer of Accession Number (0008,0051) or
Institution Name, when it names one of the hospitals served, decides; what cannot be told
apart is refused loudly, never guessed.
"""

from __future__ import annotations

import structlog

from ..tasks import Fatal, RetryLater
from .scu import StudyMatch

log = structlog.get_logger("dicomgate.images.retrieve")


def pick_hospital(found: list[StudyMatch], hospital_id: str, hospitals: tuple[str, ...],
                  accession_no: str, where: str) -> list[str]:
    """The study UIDs among `found` that belong to `hospital_id`. A study whose issuer or
    institution names another hospital of the group is left out; when the gateway serves
    several hospitals and more than one study says nothing about its hospital, which is
    whose cannot be told: refused (Fatal), never guessed."""
    def hospital_of(m: StudyMatch) -> str | None:
        named = [h for h in hospitals if h and h in m.hospital_marks]
        return named[0] if named else None

    ours = [m.study_uid for m in found if hospital_of(m) == hospital_id]
    others = {m.study_uid: hospital_of(m) for m in found
              if hospital_of(m) not in (None, hospital_id)}
    unknown = [m.study_uid for m in found if hospital_of(m) is None]
    if others:
        log.info("study.other_hospital", accession_no=accession_no, hospital_id=hospital_id,
                 left_out=others)
    if ours:
        return ours
    if not unknown:
        raise RetryLater(f"{where} has AccessionNumber {accession_no} only for hospital(s) "
                         f"{', '.join(sorted(set(others.values())))}, none for {hospital_id} "  # type: ignore[arg-type]
                         "(yet); will ask again")
    if len(hospitals) > 1 and len(unknown) > 1:
        raise Fatal(f"{where} has {len(unknown)} studies with AccessionNumber {accession_no} "
                    f"({', '.join(unknown[:5])}) and none says which hospital it belongs to; "
                    f"this gateway acts for {', '.join(hospitals)} (gateway.group_hospital_ids)"
                    ", whose accession numbers may repeat. Have the report view give the "
                    "exam's studyInstanceUid, or the PACS fill Issuer of Accession Number "
                    "(0008,0051) with the hospitalId; then `dicomgate tasks retry` this task")
    return unknown
