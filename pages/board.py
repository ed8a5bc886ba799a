"""Class board: the teacher's projected board; students' phones send photos to it through a QR code."""

from __future__ import annotations

import io

import pandas as pd
import segno
import streamlit as st

from picmetric import PicMetricError
from picmetric.interfaces.ui.board import board_photo_caption, join_address, photo_picture
from picmetric.interfaces.ui.presentation import presenting
from picmetric.interfaces.ui.resources import get_service
from picmetric.interfaces.ui.teacher import is_teacher, teacher_only_notice
from picmetric.service.board import MARK_KINDS, MARK_TASKS, ClassBoard
from picmetric.service.datasets import DatasetService

service = get_service()
boards = ClassBoard(service)
BOARD_SIZE = 24  # photos on the projector, newest first
#: what "Hide" does, said where the teacher hides (README, security)
HIDING_SAYS = (
    "Hide takes a photo off the projected board only: it stays in History and the API, and the phone that sent it "
    "still lists it. To remove it everywhere, delete it."
)
st.title("Class board")

board_id = st.query_params.get("board") or st.session_state.get("board-id")
if not board_id:
    st.markdown(
        "Start a board, project this page, and let every student send a photo from their phone: the QR code opens "
        "an upload page (no account). Each photo appears here within seconds, with what the models found; the class "
        "marks their mistakes."
    )
    if not is_teacher():
        teacher_only_notice("Starting a class board is the teacher's")
        st.stop()
    with st.form("start-board", border=False):
        title = st.text_input("Lesson title", "What do computers see?")
        if st.form_submit_button("Start a class board", type="primary", icon=":material/co_present:"):
            started = boards.start(title)
            st.session_state["board-id"] = started.id
            st.query_params["board"] = started.id
            st.rerun()
    st.stop()

try:
    board = boards.board(board_id)
except PicMetricError as exc:
    st.error(str(exc), icon=":material/search_off:")
    st.session_state.pop("board-id", None)
    st.query_params.clear()
    st.stop()
st.session_state["board-id"] = board.id
st.query_params["board"] = board.id
join_url, unreachable = join_address(board.id)

code_column, board_column = st.columns([1, 3])
with code_column:
    st.subheader(board.title)
    picture = io.BytesIO()
    segno.make(join_url, error="m").save(picture, kind="png", scale=10, border=2)  # made here: no web service
    st.image(picture.getvalue(), caption="Scan to send a photo", width="stretch")
    st.code(join_url, language=None, wrap_lines=True)  # whole: a cut-off address cannot be typed
    if unreachable:
        st.warning(
            "Phones cannot open **localhost**: start the dashboard with `./bootstrap.sh run --lan` (or open this "
            "page by this computer's network address).",
            icon=":material/wifi_off:",
        )
    else:
        st.caption("Phones must be on the same network (the same Wi-Fi) as this computer.")
    st.caption("The class's marks make the board a dataset: the detector's boxes, less those marked false or "
               "duplicate, plus those drawn around what it missed.")  # fmt: skip
    truth_name = f"board-{board.id[:8]}"
    if st.button("Evaluate this board", icon=":material/fact_check:", key="board-evaluate", width="stretch"):
        try:
            DatasetService(service).keep(truth_name, boards.ground_truth(board.id), replace=True)
            st.session_state["evaluate-dataset"] = truth_name
            st.switch_page("pages/evaluate.py")
        except PicMetricError as exc:
            st.warning(str(exc), icon=":material/hourglass_empty:")
    if st.button("Export as COCO", icon=":material/download:", key="board-export", width="stretch"):
        try:
            datasets = DatasetService(service)
            datasets.keep(truth_name, boards.ground_truth(board.id), replace=True)
            st.download_button("Download the zip", datasets.export_coco(truth_name), f"{truth_name}-coco.zip",
                               "application/zip", icon=":material/folder_zip:", width="stretch")  # fmt: skip
        except PicMetricError as exc:
            st.warning(str(exc), icon=":material/hourglass_empty:")
    if st.button("New board", icon=":material/add:", key="board-new") and is_teacher():
        st.session_state.pop("board-id", None)
        st.query_params.clear()
        st.rerun()


@st.fragment(run_every=1.0)
def live_board() -> None:
    """Polled once a second: a phone's photo is on the projector within a second or two of its analysis."""
    records = boards.records(board.id)
    st.subheader(f"{len(records)} photo{'s' if len(records) != 1 else ''} from the class")
    if not records:
        st.info("Waiting for the first photo…", icon=":material/photo_camera:")
    photos = boards.with_analyses(records[:BOARD_SIZE])  # the analyses of the photos shown only
    per_row = 2 if presenting() else 4  # on a projector: photos large enough that their boxes' labels read
    grid = st.container(key="board-photos")
    for row in range(0, len(photos), per_row):
        for column, photo in zip(grid.columns(per_row), photos[row : row + per_row], strict=False):
            picture = photo_picture(service, photo)
            if picture is not None:
                column.image(picture, width="stretch")
            column.caption(board_photo_caption(photo))
            if is_teacher() and column.button(
                "Hide", key=f"hide-{photo.id}", icon=":material/visibility_off:", help=HIDING_SAYS
            ):
                boards.hide(photo.id)
                st.rerun()
    tally = boards.tally(board.id)
    st.subheader("Mistake museum")
    counts = {task: tally[task] for task in MARK_TASKS}
    rows = [{"model": task, **{MARK_KINDS[k]: counts[task][k] for k in MARK_KINDS}} for task in MARK_TASKS]
    if presenting():  # a table of text, which presentation mode's type enlarges (a data grid it cannot)
        st.table(pd.DataFrame(rows).set_index("model"))
    else:
        st.dataframe(rows, hide_index=True, width="stretch")
    exhibits = boards.exhibits(board.id)[-6:]
    for photo_id, task, kind, what in reversed(exhibits):
        st.caption(f"Photo {photo_id} · {task}: {MARK_KINDS[kind]}{f' ({what})' if what else ''}")


with board_column:
    live_board()

hidden = [record for record in boards.records(board.id, hidden=True) if record.hidden]
if hidden and is_teacher():
    with st.expander(f"Hidden photos ({len(hidden)})", icon=":material/visibility_off:"):
        st.caption(HIDING_SAYS)
        for photo in hidden:
            show, delete = st.columns(2)
            if show.button(f"Show photo {photo.id} again", key=f"show-{photo.id}"):
                boards.hide(photo.id, hidden=False)
                st.rerun()
            if delete.button(f"Delete photo {photo.id} everywhere", key=f"delete-{photo.id}", icon=":material/delete:"):
                service.delete(photo.sha256)
                st.rerun()
