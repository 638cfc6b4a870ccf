"""Reports: exams and reports from the hospital RIS/PACS (spec 4.1), view or HTTP API."""
