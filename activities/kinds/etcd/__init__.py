"""The etcd kind's activities: certificates and membership."""

from collections.abc import Callable
from typing import Any

from .backup import etcd_backup
from .certs import ensure_etcd_certs
from .learners import etcd_member_promote
from .members import etcd_member_add, etcd_member_remove, etcd_status, etcd_wait_listening
from .restore import etcd_restore_member, etcd_unit
from .space import etcd_space

ACTIVITIES: list[Callable[..., Any]] = [ensure_etcd_certs, etcd_status, etcd_wait_listening, etcd_member_add,
                                         etcd_member_remove, etcd_backup, etcd_restore_member, etcd_unit, etcd_space,
                                         etcd_member_promote]
