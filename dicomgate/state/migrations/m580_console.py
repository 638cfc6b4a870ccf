"""Operator console: indexes for its reads (today's exams, an exam's studies, audit search)."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (580, "console indexes", """
CREATE INDEX IF NOT EXISTS exams_exam_time ON exams (exam_time);
CREATE INDEX IF NOT EXISTS exams_created ON exams (created_at);
CREATE INDEX IF NOT EXISTS studies_exam ON studies (exam_id);
CREATE INDEX IF NOT EXISTS audit_action ON audit (action, id);
"""),
]
