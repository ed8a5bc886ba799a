"""Teacher mode. With ``PICMETRIC_ADMIN_TOKEN`` set, a visitor (a student on the classroom Wi-Fi) analyses and
browses; deleting an analysis, resetting, and the System page's details (storage addresses, the log naming
everyone's uploads) need the token, typed once in the sidebar and kept for that browser session. With no token (a
laptop on the embedded defaults) everyone is the teacher, as before."""

from __future__ import annotations

import streamlit as st

from picmetric.interfaces.lockout import Lockout, locked_message
from picmetric.interfaces.ui.resources import app_settings
from picmetric.settings import tokens_match

TEACHER_KEY = "teacher"


def teacher_required() -> bool:
    return app_settings().admin_token is not None


def is_teacher() -> bool:
    return not teacher_required() or bool(st.session_state.get(TEACHER_KEY, False))


def teacher_sidebar() -> None:
    """The sidebar's unlock (or lock) for teacher mode; nothing when no token is configured."""
    if not teacher_required():
        return
    if is_teacher():
        st.sidebar.caption(":material/lock_open: Teacher mode: deleting, reset and system details unlocked")
        if st.sidebar.button("Lock teacher mode", icon=":material/lock:"):
            st.session_state[TEACHER_KEY] = False
            st.rerun()
        return
    with st.sidebar.expander("Teacher", icon=":material/lock:"):
        with st.form("teacher-unlock", border=False):
            token = st.text_input("Admin token", type="password", help="PICMETRIC_ADMIN_TOKEN of this server")
            unlocked = st.form_submit_button("Unlock")
        if unlocked:
            tries, client = token_tries(), st.context.ip_address or "this computer"
            wait = tries.wait_left(client)
            if wait:
                st.error(locked_message(wait).capitalize() + ".", icon=":material/timer:")
            elif tokens_match(token, app_settings().admin_token):
                tries.succeeded(client)
                st.session_state[TEACHER_KEY] = True
                st.rerun()
            else:
                wait = tries.failed(client)
                st.error(
                    "That is not the admin token." + (f" {locked_message(wait).capitalize()}." if wait else ""),
                    icon=":material/block:",
                )


@st.cache_resource
def token_tries() -> Lockout:
    """Wrong tokens per client address, for every browser session of this dashboard: a new tab starts none afresh."""
    return Lockout()


def teacher_only_notice(what: str) -> None:
    st.info(f"{what} — unlock teacher mode in the sidebar.", icon=":material/lock:")
