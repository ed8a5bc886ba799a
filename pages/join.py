"""Join a class board from a phone: send a photo, see what the models found, mark their mistakes."""

from __future__ import annotations

import streamlit as st

from picmetric import PicMetricError
from picmetric.interfaces.ui.board import answers, board_photo_caption, client_address, phone_key, photo_picture
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
    with st.form(f"mark-{photo.id}", border=True):
        task = st.radio("Which model?", list(MARK_TASKS), horizontal=True, key=f"task-{photo.id}")
        what = st.selectbox("Which answer? (none for something it missed)", ["(none)", *answers(analysis)],
                            key=f"what-{photo.id}")  # fmt: skip
        kind = st.radio("What is wrong?", list(MARK_KINDS), format_func=MARK_KINDS.get, horizontal=True,
                        key=f"kind-{photo.id}")  # fmt: skip
        if st.form_submit_button("Mark it", width="stretch"):
            boards.mark(photo.id, task, kind, None if what == "(none)" else what)
            st.success("Marked: it is in the mistake museum.", icon=":material/museum:")
