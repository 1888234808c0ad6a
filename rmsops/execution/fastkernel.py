"""Jupyter kernel management for kernels forked by the zygote (see ``rmsops.execution.zygote``).

``kernel_manager_class(zygote)`` gives a jupyter_client kernel manager whose provisioner asks the
zygote to fork instead of spawning ``python -m ipykernel``; pass it to papermill as
``kernel_manager_class``. Each kernel is registered in ``rmsops.execution.children``, where a
watchdog finds the kernel of a runbook that overstays its timeout.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from rmsops.execution import children
from rmsops.execution.children import ForeignProcess
from rmsops.execution.zygote import Zygote


class ForkProvisioner(LocalProvisioner):
    """Launches the kernel by asking the zygote to fork (the connection file is already written)."""

    zygote: Zygote | None = None  # set by the kernel manager

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        assert self.zygote is not None
        connection_file = self.parent.connection_file
        env = {**os.environ, **(kwargs.get("env") or {})}
        options = [arg for arg in cmd if arg.startswith("--")]  # e.g. papermill's extra_arguments
        # A spawned kernel inherits the working directory papermill has just moved to (its cwd=);
        # a forked one would keep the zygote's, so it is passed on explicitly.
        cwd = kwargs.get("cwd") or os.getcwd()
        pid = self.zygote.fork(connection_file, cwd, env, options)
        self.process = ForeignProcess(pid)
        children.register(self.process)
        self.pid = pid
        self.pgid = pid  # the kernel called setsid(): its pid is its process group
        self.cwd = cwd
        return self.connection_info


def kernel_manager_class(zygote: Zygote) -> type[AsyncKernelManager]:
    """A kernel manager class bound to one zygote (papermill's ``kernel_manager_class``)."""

    class ForkKernelManager(AsyncKernelManager):
        async def _async_pre_start_kernel(self, **kw: Any):
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or str(uuid.uuid4())
            # Unix sockets in the zygote's private folder: no TCP port to race for, nothing on the network.
            self.transport = "ipc"
            self.ip = str(zygote.folder / f"k-{self.kernel_id[:8]}")
            if self.provisioner is None:
                provisioner = ForkProvisioner(kernel_id=self.kernel_id or "", kernel_spec=self.kernel_spec,
                                              parent=self)
                provisioner.zygote = zygote
                self.provisioner = provisioner
            return await super()._async_pre_start_kernel(**kw)

    return ForkKernelManager
