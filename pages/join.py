"""Join a class board from a phone: send a photo, see what the models found, mark their mistakes."""

from __future__ import annotations

import streamlit as st

from picmetric import PicMetricError
from picmetric.interfaces.ui.board import (
    answers,
    board_photo_caption,
    box_preview,
    client_address,
    drawn_box,
    phone_key,
    photo_picture,
)
from picmetric.interfaces.ui.resources import get_service
from picmetric.service.board import MARK_KINDS, MARK_TASKS, ClassBoard

service = get_service()
boards = ClassBoard(service)
phone = phone_key(boards)  # this browser's, no account: the same in every tab and after a reload
try:
    board = boards.board(st.query_params.get("board", ""))
except PicMetricError as exc:
    st.title("Class board")
    st.error(str(exc), icon=":material/qr_code_scanner:")
    st.stop()

st.title(board.title)
with st.form("send-photo", clear_on_submit=True, border=False):
    shot = st.file_uploader("Take or choose a photo", type=["jpg", "jpeg", "png", "webp", "heic", "heif"],
                            key="join-photo")  # fmt: skip
    sent = st.form_submit_button("Send to the board", type="primary", icon=":material/send:", width="stretch")
if sent and shot is not None:
    try:
        with st.spinner("Analysing…"):
            boards.send(board.id, shot.getvalue(), phone, name=shot.name, address=client_address())
        st.success("On the board!", icon=":material/check:")
    except PicMetricError as exc:
        st.error(str(exc), icon=":material/block:")
elif sent:
    st.warning("Choose a photo first.", icon=":material/photo_camera:")

mine = boards.photos(board.id, hidden=True, phone=phone)
if mine:
    st.subheader("Your photos: did the models get it right?")
for photo in mine:
    picture = photo_picture(service, photo)
    if picture is not None:
        st.image(picture, width="stretch")
    st.caption(board_photo_caption(photo))
    analysis = photo.stored.analysis if photo.stored else None
    listed = answers(analysis)
    found = analysis.detections if analysis is not None else None
    with st.form(f"mark-{photo.id}", border=True):
        task = st.radio("Which model?", list(MARK_TASKS), horizontal=True, key=f"task-{photo.id}")
        chosen = st.selectbox("Which answer? (none for something it missed)", [-1, *range(len(listed))],
                              format_func=lambda i, listed=listed: "(none)" if i < 0 else listed[i],
                              key=f"what-{photo.id}")  # fmt: skip
        kind = st.radio("What is wrong?", list(MARK_KINDS), format_func=MARK_KINDS.get, horizontal=True,
                        key=f"kind-{photo.id}")  # fmt: skip
        if st.form_submit_button("Mark it", width="stretch"):
            on_box = task == "objects" and found is not None and 0 <= chosen < len(found)  # objects come first
            boards.mark(
                photo.id, task, kind, None if chosen < 0 else listed[chosen],
                box=found.xyxy[chosen].tolist() if on_box and found is not None else None,
                category=found.labels[chosen] if on_box and found is not None else None,
            )  # fmt: skip
            st.success("Marked: it is in the mistake museum.", icon=":material/museum:")
    if found is not None and analysis is not None:
        with st.expander("Draw a box around an object it missed", icon=":material/crop_free:"):
            what = st.selectbox("What is it?", found.class_names, key=f"missed-class-{photo.id}")
            across = st.slider("Left to right (%)", 0, 100, (30, 70), key=f"missed-x-{photo.id}")
            down = st.slider("Top to bottom (%)", 0, 100, (30, 70), key=f"missed-y-{photo.id}")
            box = drawn_box(across, down, analysis.width, analysis.height)
            original = service.image(photo.entry.sha256)
            if original is not None:
                st.image(box_preview(original.etag, original, box), width="stretch")
            if st.button("Mark it as missed", key=f"missed-{photo.id}", width="stretch", disabled=box is None):
                boards.mark(photo.id, "objects", "missed", f"{what} (drawn)", box=box, category=what)
                st.success(f"Marked: a missed {what}.", icon=":material/museum:")
