"""Who people and programs talk to: the Streamlit dashboard's helpers (``ui``), the HTTP API (``api``), the
command line (``cli``) and the Celery worker (``worker``). They call the service layer, never storage or models."""
