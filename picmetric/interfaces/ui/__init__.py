"""Streamlit building blocks shared by the pages (the pages themselves stay thin)."""

from pathlib import Path

#: the browser tab's icon, shipped with the package (a Material icon name would be fetched from Google's fonts)
FAVICON = Path(__file__).with_name("favicon.png")
