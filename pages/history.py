"""History: every stored analysis, filterable, with the full view of any one of them."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from picmetric import PicMetricError
from picmetric.core.decoding import IMAGE_SOURCES
from picmetric.interfaces.ui.resources import get_service, get_videos
from picmetric.interfaces.ui.teacher import is_teacher
from picmetric.interfaces.ui.thumbnails import thumbnail_src
from picmetric.interfaces.ui.views import (
    commit_dates_on_enter,
    display_sidebar,
    options_summary,
    scroll_to,
    show_analysis,
)
from picmetric.service.types import HistoryFilter

PAGE_SIZE = 50
service = get_service()
st.title("History")
deleted = st.session_state.pop("history_deleted", None)
if deleted:  # said where the user looks, once, after the rerun that removed it
    st.success(f"Deleted {deleted}.", icon=":material/delete:")
    st.toast(f"Deleted {deleted}.", icon=":material/delete:")

notice = st.empty()  # a shared link's problem, said at the top where it is seen
phone = "Mobi" in st.context.headers.get("User-Agent", "")
with st.expander("Filters", expanded=not phone, icon=":material/filter_list:"):  # a phone: the results first
    text_col, faces_col, from_col, to_col, source_col = st.columns([3, 1, 1.3, 1.3, 1])
    text = text_col.text_input("Label or object class", placeholder="e.g. person, dog, bus")
    min_faces = faces_col.number_input("Min faces", 0, 100, 0)
    # two single dates, not one range: a typed date counts as soon as it is complete, like a picked one, and
    # either end may stay open
    first_day = from_col.date_input("From", value=None, format="YYYY-MM-DD")
    last_day = to_col.date_input("To", value=None, format="YYYY-MM-DD")
    source = source_col.selectbox("Source", ["any", *IMAGE_SOURCES])
    commit_dates_on_enter()

date_from = datetime.combine(first_day, time.min, UTC) if first_day else None
date_to = datetime.combine(last_day, time.max, UTC) if last_day else None
if date_from and date_to and date_from > date_to:
    st.warning("“From” is after “To”: no analysis can match.", icon=":material/event_busy:")
filters = HistoryFilter(
    text=text or None, min_faces=min_faces or None, date_from=date_from, date_to=date_to,
    source=None if source == "any" else source,
)  # fmt: skip
page_number = st.session_state.get("history_page", 1)
page = service.history(filters, page=page_number, page_size=PAGE_SIZE)
if page_number > page.pages:
    st.session_state["history_page"] = 1
    st.rerun()

st.caption(f"{page.summary} · click a row to open it" if page.total else "No analysis matches these filters.")
frame = pd.DataFrame(
    [
        {
            "thumbnail": thumbnail_src(item.thumbnail),
            "name": item.name or item.sha256[:12],
            "top label": f"{item.top_label} ({item.top_confidence:.0%})" if item.top_label else item.status,
            "objects": ", ".join(item.object_classes),
            "faces": item.face_count,
            "source": item.source,
            "analysed": item.created_at,
            "settings": options_summary(item.options),
            "ms": round(item.total_ms) if item.total_ms else None,
            "hash": item.sha256[:12],  # enough to tell photos apart and to search by (8+); whole, it was cut
            "sha256": item.sha256,
        }
        for item in page.items
    ],
    columns=[
        "thumbnail",
        "name",
        "top label",
        "objects",
        "faces",
        "source",
        "analysed",
        "settings",
        "ms",
        "hash",
        "sha256",
    ],  # fmt: skip
)
event = st.dataframe(
    frame, hide_index=True, width="stretch", on_select="rerun", selection_mode=["single-row", "single-cell"],
    # a new key after each deletion: the old selection (a row index) would otherwise open the row that moved up
    key=f"history-table-{st.session_state.get('history_generation', 0)}", row_height=64,
    column_config={
        "thumbnail": st.column_config.ImageColumn("", width="small"),
        "analysed": st.column_config.DatetimeColumn("analysed (UTC)", format="YYYY-MM-DD HH:mm"),
        "settings": st.column_config.TextColumn("settings", help="what this analysis ran with"),
        "ms": st.column_config.NumberColumn("ms", format="%d", width=70),
        "hash": st.column_config.TextColumn("hash", width=130, help="the start of the photo's sha256"),
        "sha256": None,  # not shown: what a click opens
    },
)  # fmt: skip
previous, _, following = st.columns([1, 4, 1])
if previous.button("← Newer", disabled=page.page <= 1, width="stretch"):
    st.session_state["history_page"] = page.page - 1
    st.rerun()
if following.button("Older →", disabled=page.page >= page.pages, width="stretch"):
    st.session_state["history_page"] = page.page + 1
    st.rerun()

clicked = event.selection.rows or [row for row, _ in event.selection.cells]  # a row, or any cell of it
if clicked:
    st.query_params["sha"] = frame.iloc[clicked[0]]["sha256"]  # the address bar now names it: shareable
selected = st.query_params.get("sha")
try:  # a sha256, the seed's md5, or a unique prefix of 8+ hex characters
    stored = service.find(selected) if selected else None
except PicMetricError as exc:
    notice.warning(str(exc), icon=":material/search:")
    selected, stored = None, None
display = display_sidebar(stored.analysis if stored else None)
if selected and stored is None:
    notice.warning("That analysis is not in the history (it may have been deleted).", icon=":material/search_off:")
elif stored is not None:
    st.divider()
    title, action = st.columns([4, 1])
    title.subheader(stored.analysis.name or stored.sha256[:12], anchor="opened")
    if clicked or st.session_state.get("history-shown") != stored.sha256:
        scroll_to("opened")  # the opened analysis (clicked, or a shared link) is under the table: bring it into view
    st.session_state["history-shown"] = stored.sha256
    if is_teacher():
        # keyed by the hash: the confirmation belongs to this analysis and never stays open for another
        with action.popover("Delete", icon=":material/delete:", key=f"delete-{stored.sha256}"):
            st.write("Delete this image, its analyses and its renders?")
            if st.button("Yes, delete it", type="primary", key=f"confirm-delete-{stored.sha256}"):
                service.delete(stored.sha256)
                st.session_state.get("results", {}).pop(stored.sha256, None)
                st.session_state["history_deleted"] = stored.analysis.name or stored.sha256[:12]
                st.session_state["history_generation"] = st.session_state.get("history_generation", 0) + 1
                st.query_params.clear()
                st.rerun()
    show_analysis(service, stored, display, key="history", history_notice=False)

clips = get_videos().videos(limit=20)
if clips:
    with st.expander(f"Videos ({len(clips)})", icon=":material/movie:", expanded=False):
        listed = pd.DataFrame(
            [
                {"name": facts["name"] or facts["sha256"][:12], "seconds": round(facts["duration_s"], 1),
                 "frames": facts["frames"], "size": f"{facts['width']}x{facts['height']}",
                 "analysis": progress.state if progress else "none", "stored": facts["created_at"]}
                for facts, progress in clips
            ]
        )  # fmt: skip
        chosen = st.dataframe(listed, hide_index=True, width="stretch", on_select="rerun",
                              selection_mode="single-row", key="history-videos")  # fmt: skip
        if chosen is not None and chosen.selection.rows:
            facts, progress = clips[chosen.selection.rows[0]]
            if progress is not None and progress.state == "done":
                st.video(get_videos().clip(progress.id), format="video/mp4")
            else:
                st.caption("No finished analysis of this clip yet: open it on the Video page.")
