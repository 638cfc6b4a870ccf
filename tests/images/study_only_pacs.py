"""A Q/R SCP built on pynetdicom that, like some PACS, refuses SERIES/IMAGE-level C-FIND:
it answers STUDY-level queries (optionally with NumberOfStudyRelatedInstances) and
STUDY-level C-MOVE. For the retrieve fallback tests (Orthanc never refuses these).

With `find_levels` it also answers finer C-FINDs, and `move_levels` says at which levels
a C-MOVE sends anything (below them it answers success with nothing sent, as some PACSs
do): the repair ladder's SERIES and STUDY steps are tested against it."""

from __future__ import annotations

import io

import pydicom
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

REFUSED = 0xC310  # "unable to process": what such PACS answer


class StudyOnlyPacs:
    def __init__(self, aet: str, port: int, destinations: dict[str, tuple[str, int]],
                 give_count: bool = True, find_levels: tuple[str, ...] = ("STUDY",),
                 move_levels: tuple[str, ...] = ("STUDY",), count_extra: int = 0,
                 unlisted: int = 0):
        self.find_levels, self.move_levels = find_levels, move_levels
        self.count_extra = count_extra  # a stale index: claims more than it can move
        self.unlisted = unlisted  # an index lagging its uploads: the last ones not listed
        self.associations = 0
        self.moves: list[str] = []  # the level of each C-MOVE asked
        self.instances: list[pydicom.Dataset] = []
        self.destinations = destinations
        self.give_count = give_count
        self.refused_levels: list[str] = []
        ae = AE(ae_title=aet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        ae.add_requested_context(CTImageStorage)  # the tests' studies are CT
        self.ae, self.port = ae, port
        self.server = None

    def add(self, part10: bytes) -> None:
        self.instances.append(pydicom.dcmread(io.BytesIO(part10)))

    def start(self) -> StudyOnlyPacs:
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False,
            evt_handlers=[(evt.EVT_C_FIND, self._find), (evt.EVT_C_MOVE, self._move),
                          (evt.EVT_ACCEPTED, self._accepted)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    def _accepted(self, _event) -> None:
        self.associations += 1

    def _study(self, uid: str) -> list[pydicom.Dataset]:
        return [d for d in self.instances if d.StudyInstanceUID == uid]

    def _find(self, event):
        query = event.identifier
        if query.QueryRetrieveLevel not in self.find_levels:
            self.refused_levels.append(query.QueryRetrieveLevel)
            yield REFUSED, None
            return
        if query.QueryRetrieveLevel != "STUDY":
            yield from self._find_below_study(query)
            return
        uids = {d.StudyInstanceUID for d in self.instances}
        if query.get("StudyInstanceUID"):
            uids &= {query.StudyInstanceUID}
        if query.get("AccessionNumber"):
            uids &= {d.StudyInstanceUID for d in self.instances
                     if d.AccessionNumber == query.AccessionNumber}
        for uid in sorted(uids):
            ident = pydicom.Dataset()
            ident.QueryRetrieveLevel = "STUDY"
            ident.StudyInstanceUID = uid
            if self.give_count:
                ident.NumberOfStudyRelatedInstances = len(self._study(uid)) + self.count_extra
            yield 0xFF00, ident

    def _find_below_study(self, query):
        level = query.QueryRetrieveLevel
        series_seen: set[str] = set()
        study = self._study(query.StudyInstanceUID)
        for d in study[:len(study) - self.unlisted]:
            if level == "IMAGE" and d.SeriesInstanceUID != query.get("SeriesInstanceUID"):
                continue
            if level == "SERIES":  # one answer per series
                if d.SeriesInstanceUID in series_seen:
                    continue
                series_seen.add(d.SeriesInstanceUID)
            ident = pydicom.Dataset()
            ident.QueryRetrieveLevel = level
            ident.StudyInstanceUID = d.StudyInstanceUID
            ident.SeriesInstanceUID = d.SeriesInstanceUID
            if level == "IMAGE":
                ident.SOPInstanceUID = d.SOPInstanceUID
                ident.SOPClassUID = d.SOPClassUID
            yield 0xFF00, ident

    def _move(self, event):
        query = event.identifier
        dest = event.move_destination
        dest = (dest.decode() if isinstance(dest, bytes) else dest).strip()
        if dest not in self.destinations:
            yield None, None  # unknown destination: pynetdicom answers 0xA801
            return
        yield self.destinations[dest]
        self.moves.append(query.QueryRetrieveLevel)
        if query.QueryRetrieveLevel not in self.move_levels:
            yield 0
            return
        matches = self._study(query.StudyInstanceUID)
        if query.QueryRetrieveLevel in ("SERIES", "IMAGE"):
            matches = [d for d in matches if d.SeriesInstanceUID == query.SeriesInstanceUID]
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds
