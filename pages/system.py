"""System: models and their state, storage health and statistics, recent log lines, and reset."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from picmetric.core.catalog import CLASSIFIERS
from picmetric.interfaces.ui.resources import get_jobs
from picmetric.interfaces.ui.teacher import is_teacher, teacher_only_notice

jobs = get_jobs()
service = jobs.service
teacher = is_teacher()
st.title("System")
reset_done = st.session_state.pop("reset_done", False)
if reset_done:
    st.session_state["reset_confirmation"] = ""

st.subheader("Models")
loaded = service.loaded_models()
st.dataframe(
    pd.DataFrame(
        [{"model": version, "state": "loaded" if state else "not loaded"} for version, state in loaded.items()]
        + [
            {"model": f"{spec.key}@{spec.input_size}", "state": "available"}
            for spec in CLASSIFIERS.values()
            if f"{spec.key}@{spec.input_size}" not in loaded
        ]
    ),
    hide_index=True,
    width="stretch",
)
st.caption("ONNX Runtime providers: " + ", ".join(service.providers()))

st.subheader("Storage")
health = service.health()
left, right = st.columns(2)
with left:
    where = f" · {service.settings.safe_database_url}" if teacher else ""  # addresses are for the teacher
    (st.success if health["database"] == "ok" else st.error)(
        f"Database: {health['database']}{where}", icon=":material/database:"
    )
with right:
    where = f" · {service.storage_description()}" if teacher else ""
    (st.success if health["storage"] == "ok" else st.error)(
        f"Object store: {health['storage']}{where}", icon=":material/cloud:"
    )
if health["database"] == "ok":
    stats = service.stats()
    columns = st.columns(5)
    columns[0].metric("Images", stats["images"])
    columns[1].metric("Analyses", stats["analyses"])
    columns[2].metric("Failed", stats["failed"])
    columns[3].metric("Faces found", stats["faces"])
    columns[4].metric("Originals stored", f"{stats['original_bytes'] / 1e6:.1f} MB")

st.subheader("Jobs")
queue = jobs.queue.status(ping_workers=True)
left, right = st.columns(2)
with left:
    if queue.kind == "in-process":
        st.info("Broker: none · jobs run on this server's threads (set PICMETRIC_BROKER_URL for workers)",
                icon=":material/memory:")  # fmt: skip
    else:
        state = "ok" if queue.reachable else (queue.error if teacher else "unreachable")
        where = queue.broker if teacher else queue.transport  # the address is the teacher's to see
        (st.success if queue.reachable else st.error)(f"Broker: {state} · {where}", icon=":material/hub:")
with right:
    st.metric("Waiting in the queue", queue.depth if queue.depth is not None else "?")
if queue.kind != "in-process":
    st.caption(
        f"Workers that answered a ping: {', '.join(queue.workers)}"
        if queue.workers
        else "No worker answered a ping: start one with `picmetric worker`."
    )

st.subheader("Recent log")
if not teacher:
    teacher_only_notice("The log names everyone's uploads: it is for the teacher")
else:
    lines = service.recent_log(200)
    st.code("\n".join(lines) if lines else "(nothing logged yet)", language=None, height=260)

st.subheader("Reset")
if not teacher:
    teacher_only_notice("Reset deletes everything: it is for the teacher")
else:
    with st.container(border=True):
        st.warning(
            "Reset deletes every stored image, render and analysis, and the log lines that name the uploads. "
            "It cannot be undone.",
            icon=":material/warning:",
        )
        typed = st.text_input('Type "delete everything" to confirm', key="reset_confirmation")
        # never disabled: a disabled button would swallow the click that also commits the typed text
        if st.button("Reset all data", type="primary"):
            if typed.strip().lower() != "delete everything":
                st.error('Nothing was deleted: type "delete everything" in the box first.', icon=":material/block:")
            else:
                jobs.service.reset()
                for key in ("results", "current", "batch", "_working_images"):
                    st.session_state.pop(key, None)
                st.session_state["reset_done"] = True
                st.rerun()
        if reset_done:  # where the user is looking: under the button they clicked
            st.success("All stored data and the log were deleted.", icon=":material/check:")
            st.toast("All stored data and the log were deleted.", icon=":material/check:")
