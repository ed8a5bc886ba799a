"""Start Streamlit on the dashboard with ``app.py``'s ``st.navigation`` in charge from the very first request.

Streamlit treats a ``pages/`` folder next to the entry script as an old-style multipage app until the entry script
has run once in the process: a bookmarked ``/system`` opened first after a restart showed Streamlit's automatic
page list (or "Page not found"). PicMetric keeps ``pages/`` (one thin file per page) but declares its pages with
``st.navigation``, so this launcher tells Streamlit so before the server starts.
"""

from __future__ import annotations

import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli


def main() -> None:
    PagesManager.uses_pages_directory = False  # app.py's st.navigation lists the pages: never auto-discover pages/
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
