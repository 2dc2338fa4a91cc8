"""Run a Python program the way ``python`` does, and trace its child processes.

``run_script`` / ``run_module`` execute the target in a fresh ``__main__``
module with ``sys.argv`` and ``sys.path[0]`` set as the interpreter sets them,
turn ``SystemExit`` into an exit status, and report an uncaught exception
through ``sys.excepthook`` with the traceback starting at the program's own
frames. ``wait_for_threads`` then does what interpreter shutdown does first
(join non-daemon threads, run ``threading`` at-exit callbacks such as
``concurrent.futures``'), so the other threads' work is traced to its end.

What is traced of the main thread (``start_recording(...,
current_thread=False)``): the program's code only, from the CALL of its
``<module>`` at call_depth 0 to its RETURN (EXCEPTION if it ends by one): the
code is called as a Python function (``tracer.call_traced``), never through
``exec`` or the runner's frames, so the trace holds nothing of atf2.

Children (``atf2 record``): ``enable_child_tracing(root, options)`` makes
every ``multiprocessing`` child record its own session in
``root/pid_<pid>/``: forked children through an ``os.register_at_fork`` hook
(the inherited session is already disabled by ``atf2.session``; the trace
starts where ``os.fork()`` returns in the child, installed by a C callable),
spawned (and forkserver-less) children through the command line
``multiprocessing`` builds for them, which first imports this module to
start the recording and traces ``spawn_main``'s call only.
The options travel in the environment variable ``ATF2_RECORD``.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import threading
import types

from .errors import AtfV2Error

ENV_VAR = "ATF2_RECORD"
_ATF2_DIR = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------- running


def _fresh_main() -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=__builtins__ if isinstance(__builtins__, dict) else __builtins__.__dict__)
    sys.modules["__main__"] = main
    return main


def _exit_status(exc: SystemExit) -> int:
    """What the interpreter does with SystemExit.code."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _report_uncaught(exc: BaseException) -> None:
    """sys.excepthook with the runner's own frames cut off the traceback."""
    import runpy

    ours = (_ATF2_DIR + os.sep, os.path.abspath(runpy.__file__))
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(ours):
        tb = tb.tb_next
    # The default hook prints the exception's own __traceback__: set it too.
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


def _run(execute) -> int:
    try:
        execute()
    except SystemExit as exc:
        return _exit_status(exc)
    except KeyboardInterrupt as exc:
        _report_uncaught(exc)
        return 130
    except BaseException as exc:  # noqa: BLE001 - the program's uncaught exception
        _report_uncaught(exc)
        return 1
    return 0


def run_script(path: str, args: list[str]) -> int:
    """Run ``path`` as ``python path args...`` would; returns the exit status."""
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise AtfV2Error(f"can't open file {path!r}: {exc.strerror}", path) from None
    filename = os.path.abspath(path)  # python 3.9+ runs scripts under their absolute path
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        _report_uncaught(exc)
        return 1
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    main = _fresh_main()
    main.__file__ = filename
    main.__cached__ = None  # type: ignore[attr-defined]  # set by the import system, not declared on ModuleType
    main.__loader__ = None
    main.__spec__ = None
    main.__package__ = None
    return _run(lambda: _call_program(code, main.__dict__))


def _call_program(code: types.CodeType, namespace: dict):
    """``exec(code, namespace)`` as the call of a Python function made of ``code``.

    A module's code called as a function runs with its globals as locals,
    like ``exec``; unlike ``exec``, its call is not a C call, so under
    ``atf2 record`` (``tracer.call_traced``) the program's ``<module>`` is the
    first and last event of the main thread, with nothing of the runner's.
    """
    from .tracer import call_traced

    return call_traced(types.FunctionType(code, namespace))


def run_module(name: str, args: list[str]) -> int:
    """Run ``name`` as ``python -m name args...`` would; returns the exit status."""
    import runpy

    sys.argv = ["-m", *args]
    sys.path[0] = os.getcwd()
    main = _fresh_main()

    def execute():
        # runpy._run_module_as_main(name, alter_argv=True), python -m's entry
        # point, in two steps so that only the module's own code is traced
        # (the packages above it are imported first, untraced, as cProfile -m does).
        try:
            # runpy's private helpers (what python -m runs), undeclared in typeshed
            _, spec, code = runpy._get_module_details(name, runpy._Error)  # type: ignore[attr-defined]
        except runpy._Error as exc:  # type: ignore[attr-defined]
            sys.exit(f"{sys.executable}: {exc}")
        sys.argv[0] = spec.origin
        main.__dict__.update(
            __name__="__main__",
            __file__=spec.origin,
            __cached__=spec.cached,
            __doc__=None,
            __loader__=spec.loader,
            __package__=spec.parent,
            __spec__=spec,
        )
        _call_program(code, main.__dict__)

    return _run(execute)


def wait_for_threads() -> None:
    """Interpreter shutdown's first step: join non-daemon threads, run threading at-exit hooks."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:  # pragma: no cover - every CPython has it
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join()


# --------------------------------------------------------------------- child processes

_child_config: dict | None = None
_fork_hook_registered = False  # os.register_at_fork cannot be undone: once per process


def start_recording(
    session_dir: str, c_calls: bool = False, session_options: dict | None = None, current_thread: bool = True
):
    """Start a session in ``session_dir`` and trace this process's Python code.

    ``current_thread=False`` (``atf2 record``): the calling thread is traced
    only while ``run_script`` / ``run_module`` runs the program's code.
    """
    from . import tracer
    from .session import trace_session_start

    session = trace_session_start(session_dir, trace_python=False, **(session_options or {}))
    try:
        tracer.start_tracing(session, c_calls=c_calls, current_thread=current_thread)
    except BaseException:
        from .session import trace_session_stop

        trace_session_stop()
        raise
    return session


def stop_recording():
    """Stop tracing and the session; returns the final SessionStats."""
    from . import tracer
    from .session import trace_session_stop

    tracer.stop_tracing()
    return trace_session_stop()


def enable_child_tracing(root: str, c_calls: bool = False, session_options: dict | None = None) -> None:
    """Record every multiprocessing child into ``root/pid_<pid>/`` (fork and spawn)."""
    global _child_config, _fork_hook_registered
    _child_config = {"root": os.path.abspath(root), "c_calls": bool(c_calls), "session": session_options or {}}
    os.environ[ENV_VAR] = json.dumps(_child_config)
    if not _fork_hook_registered:
        _register_fork_hooks()
        _fork_hook_registered = True
    _patch_spawn_command_line()


def _child_session_dir(config: dict) -> str:
    return os.path.join(config["root"], f"pid_{os.getpid()}")


def _register_fork_hooks() -> None:
    """After fork, in the child: ``_record_forked_child`` starts the recording,
    then a C callable (registered after it, so it runs after it) installs the
    hook: the child's trace starts where ``os.fork()`` returns, with no frame
    of atf2 in it."""
    from .tracer import install_after_fork

    os.register_at_fork(after_in_child=_record_forked_child)
    os.register_at_fork(after_in_child=install_after_fork)


def _record_forked_child() -> None:
    """After fork, in the child: a fresh session of its own (the parent's is disabled)."""
    config = _child_config
    if config is None:
        return
    caller = sys._getframe(1)  # called from C inside os.fork(): the frame that called it
    try:
        from .session import active_session, trace_session_stop
        from .tracer import arm_after_return, remove_profile

        inherited = active_session()
        if inherited is not None and inherited.status == "disabled":
            trace_session_stop()  # releases the parent's session (touches none of its files)
        start_recording(_child_session_dir(config), config["c_calls"], config["session"], current_thread=False)
        arm_after_return(caller)
    except Exception as exc:  # noqa: BLE001 - never break the child over tracing
        print(f"atf2: not tracing child {os.getpid()}: {exc}", file=sys.stderr)
        return
    # multiprocessing children leave with os._exit (no atexit); threading's
    # at-exit callbacks still run at the end of Process._bootstrap, and at
    # normal interpreter shutdown. They run last-in first-out: remove_profile
    # (a C callable) unhooks this thread first, so the stop is not recorded.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_stop_child)
            register(remove_profile)
        except RuntimeError:  # the parent was already shutting down
            pass
    atexit.register(_stop_child)


def _stop_child() -> None:
    from .session import active_session

    session = active_session()
    if session is not None and session.pid == os.getpid():
        stop_recording()


def _patch_spawn_command_line() -> None:
    """Spawned children run ``python -c '<prog>'``: put our start in front of <prog>."""
    try:
        from multiprocessing import spawn
    except ImportError:  # pragma: no cover
        return
    original = spawn.get_command_line
    if getattr(original, "_atf2", False):
        return

    def get_command_line(**kwds):
        cmd = original(**kwds)
        if "-c" in cmd:
            i = cmd.index("-c") + 1
            prog = cmd[i]
            # '... import spawn_main; spawn_main(k=v, ...)': the child's work is
            # spawn_main's call; trace only that, as atf2 record traces <module>.
            call = "; spawn_main("
            if call in prog:
                prog = prog.replace(call, "; atf2.runner.run_spawned_main(spawn_main, ", 1)
                start = "atf2.runner.record_spawned_child(current_thread=False)"
            else:  # another command line: trace it all, from here on
                start = "atf2.runner.record_spawned_child()"
            cmd = [*cmd[:i], f"import atf2.runner; {start}; {prog}", *cmd[i + 1 :]]
        return cmd

    get_command_line._atf2 = True  # type: ignore[attr-defined]  # marks the patched function
    spawn.get_command_line = get_command_line


def run_spawned_main(spawn_main, **kwds):
    """A spawned child's ``spawn_main(**kwds)``, its main thread traced from
    ``spawn_main``'s CALL at depth 0 to its exit (``sys.exit``), nothing else."""
    from .tracer import call_traced

    return call_traced(functools.partial(spawn_main, **kwds))  # a C call-less call: no event before its CALL


def record_spawned_child(current_thread: bool = True) -> None:
    """Entry of a spawned child (see ``_patch_spawn_command_line``): record until exit.

    ``current_thread=False``: the main thread is traced only inside
    ``run_spawned_main``."""
    global _child_config
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return
    try:
        config = json.loads(raw)
        _child_config = config
        start_recording(_child_session_dir(config), config.get("c_calls", False), config.get("session"), current_thread)
    except Exception as exc:  # noqa: BLE001 - never break the child over tracing
        print(f"atf2: not tracing child {os.getpid()}: {exc}", file=sys.stderr)
        return
    # The spawned child ends with sys.exit(): stop at exit (before atf2.session's
    # own at-exit stop, atexit being last-in first-out). Its children are traced too.
    atexit.register(_stop_child)
    _register_fork_hooks()
    _patch_spawn_command_line()
