"""The process's main loop: a raw ``select.epoll`` loop (the data plane's home) with Trio as its
guest (the control plane). See ``hostloop.HostLoop``."""

from .hostloop import HostLoop, current_host_loop

__all__ = ["HostLoop", "current_host_loop"]
