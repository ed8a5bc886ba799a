"""Analyse and keep: ``analyses.AnalysisService`` (one photo analysed once, stored, found again) and
``jobs.JobService`` (queued analyses with leases, in-process or on Celery workers). The interfaces' one door to
storage."""
