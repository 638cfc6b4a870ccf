"""Generated batches of several studies sent to a real Orthanc cloud: whatever the studies'
sizes and the bounds, every request keeps to `batch_max_instances` / `batch_max_bytes`
(one larger instance alone), the cloud counts as many STOW-RS requests as were made, and
each study's summary is exactly its own instances."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from cloud_peers import CountingCloud
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from upstream_helpers import build_app, spool, upstream_config

from dicomgate.sandbox.studies import StudySpec, ct_instances
from dicomgate.state.names import InstanceState
from dicomgate.upstream.stow_batches import make_batches


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    o = CountingCloud(tmp_path_factory.mktemp("bounds-cloud")).start()
    yield o
    o.stop()


studies_st = st.lists(st.tuples(st.integers(1, 4), st.sampled_from([8, 16, 48])),
                      min_size=1, max_size=5)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(studies=studies_st, max_instances=st.integers(1, 7),
       max_bytes=st.sampled_from([1024, 4096, 12_000, 64_000, 10**7]))
def test_requests_keep_their_bounds_and_studies_their_counts(cloud, studies, max_instances,
                                                             max_bytes):
    cloud.clear()
    work = Path(tempfile.mkdtemp(prefix="dicomgate-bounds-"))
    try:
        app = build_app(upstream_config(work / "state", cloud.dicomweb_url,
                                        "http://127.0.0.1:9/api", concurrency=2,
                                        batch_max_instances=max_instances,
                                        batch_max_bytes=f"{max_bytes}B"))
        mine: dict[str, set[str]] = {}
        for i, (n, size) in enumerate(studies):
            spec = StudySpec(f"BOUND{i}")
            mine[spec.study_uid] = set(spool(app, ct_instances(
                spec, series=1, per_series=n, rows=size, cols=size, seed=i)))
        received = (InstanceState.RECEIVED,)
        rows = [r for uid in mine for r in app.store.instances.of_study(uid, received)]
        sizes = {r.sop_uid: r.size for r in rows}
        sent_items: list[list[str]] = []
        client = app.features["upstream"].upload.client
        real = client.stow

        def watch(items, attempts):  # the real request, observed
            sent_items.append([u for u, _ in items])
            return real(items, attempts)

        client.stow = watch
        cloud.forget_requests()
        sent = app.features["upstream"].uploader.upload_studies(rows)
        expected = make_batches(rows, max_bytes, max_instances)
        assert sent.requests == len(expected) == len(sent_items) == cloud.stow_posts()
        for batch in sent_items:
            assert len(batch) <= max_instances
            assert len(batch) == 1 or sum(sizes[u] for u in batch) <= max_bytes
        for uid, sops in mine.items():
            s = sent.studies[uid]
            assert (s.total, s.uploaded, s.rejected, s.error) == (len(sops), len(sops), 0, None)
            assert s.uploaded_bytes == sum(sizes[u] for u in sops)
            assert s.requests == sum(1 for b in sent_items if sops & set(b))
            assert cloud.sop_uids(uid) == sops
        app.features["upstream"].uploader.close()
        app.store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
