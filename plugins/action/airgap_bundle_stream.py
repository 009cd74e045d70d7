"""Action: stream an ollama-airgap bundle over the host's SSH connection into a receiver that checks, hashes and
unpacks each member as it arrives (transfer, verification and unpacking overlap; the host never holds an archive).

The ssh command line is the one ansible's ssh connection plugin builds for the host (``_build_command``: host, port,
user, private key, ssh_args, ssh_common_args, ssh_extra_args, ControlPath), as ansible.posix.synchronize builds its
own from the same variables; become wraps the remote command as for any module. Connection ``local`` runs the
receiver with /bin/sh. ansible's exec_command(in_data=...) is not used: it holds all input in memory.

Steps: (1) probe the host (architecture, GPU overlays, verified record, what an earlier broken transfer left, free
space); (2) choose the files this host needs (module_utils/airgap_bundle_select.py); (3) unless the host's record
already covers them: send only the missing ones (continuing a partial member), which the receiver verifies into
staging and swaps into the bundle root. In check mode only (1) and (2) run and the result says what would be sent."""

from __future__ import annotations

import os
import shlex
import time
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
    META_NAMES,
    BundleError,
    expected_files,
    hex64_problem,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_select import choose
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_send import (
    BOOT,
    answer,
    carried_paths,
    header_line,
    open_source,
    run_receiver,
    send_members,
)

ARGS = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "state_dir": {"type": "path", "required": True},
    "manifest": {"type": "dict", "required": True},
    "manifest_sha256": {"type": "str", "required": True},
    "select": {"type": "dict", "default": {}},
    "subset": {"type": "bool", "default": True},
    "public_key": {"type": "str", "default": ""},
    "rehash_base": {"type": "bool", "default": False},
    "free_space_margin": {"type": "int", "default": 0},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGS)
        try:
            result.update(self._deliver(args, task_vars or {}))
        except BundleError as exc:
            result.update(failed=True, msg=f"{args['src']}: {exc}")
        except OSError as exc:
            result.update(failed=True, msg=f"{exc.filename or args['src']}: {exc.strerror or exc}")
        return result

    # --- the remote side ---------------------------------------------------------------------------------

    def _argv(self, task_vars: dict[str, Any], bulk: bool) -> tuple[list[str], tuple[int, ...]]:
        python = self._templar.template(
            task_vars.get("ansible_python_interpreter")
            or task_vars.get("ansible_facts", {}).get("discovered_interpreter_python")
            or "/usr/bin/python3"
        )
        cmd = f"{shlex.quote(str(python))} -c {shlex.quote(BOOT)}"
        connection = self._connection
        remote_user, become_user = self._get_remote_user(), self.get_become_option("become_user")
        same_user = not C.BECOME_ALLOW_SAME_USER and become_user == remote_user and any((remote_user, become_user))
        if connection.become and not same_user:  # as _low_level_execute_command decides it
            if connection.become.expect_prompt():
                raise AnsibleError("airgap_bundle_stream: become with a password prompt cannot stream; use NOPASSWD")
            cmd = connection.become.build_become_command(cmd, connection._shell)
        transport = connection.transport.rsplit(".", 1)[-1]
        if transport == "local":
            return ["/bin/sh", "-c", cmd], ()
        if transport != "ssh":
            raise AnsibleError(f"airgap_bundle_stream needs the ssh or local connection, not {connection.transport}")
        host = connection.get_option("host") or self._play_context.remote_addr
        binary = connection.get_option("ssh_executable")
        argv = [to_text(a) for a in connection._build_command(binary, "ssh", host, cmd)]
        if bulk:  # its own TCP connection: through a ControlMaster every byte takes one more process and copy
            at = argv.index(to_text(binary)) + 1
            argv[at:at] = ["-o", "ControlPath=none"]
        pipe = getattr(connection, "sshpass_pipe", None)
        return argv, (pipe[0],) if pipe else ()

    def _call(self, task_vars: dict[str, Any], params: dict[str, Any], stream: Any = None) -> tuple[dict, int]:
        argv, fds = self._argv(task_vars, stream is not None)
        pipe = getattr(self._connection, "sshpass_pipe", None)
        if pipe:  # the password for sshpass, as ansible's ssh plugin writes it
            password = self._connection.get_option("password") or self._play_context.password
            os.write(pipe[1], f"{password}\n".encode())
            os.close(pipe[1])
        rc, out, err, sent = run_receiver(argv, header_line(params), fds, stream)
        return answer(rc, out, err), sent

    # --- deciding and sending ----------------------------------------------------------------------------

    def _deliver(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        digest, manifest = args["manifest_sha256"], args["manifest"]
        if problem := hex64_problem("manifest_sha256", digest):
            raise BundleError(problem)
        files = manifest.get("files") or []
        listed = expected_files(files)
        base = {"dest": args["dest"], "state_dir": args["state_dir"], "digest": digest, "files": files}
        probe, _ = self._call(task_vars, {**base, "mode": "probe", "public_key": args["public_key"]})
        if probe.get("failed"):
            return probe
        needed, subset, left_out = choose(manifest, list(listed), probe, args["select"], args["subset"])
        common = {"changed": False, "digest": digest, "root": args["dest"], "subset": subset,
                  "left_out": left_out, "sent_bytes": 0, "hashed_bytes": 0}  # fmt: skip
        if probe["current"] and set(needed) <= set(probe["recorded_paths"]):
            return {**common, "current": True, "msg": "the host holds this bundle verified: nothing sent"}
        complete, linkable = set(probe["complete"]), set(probe["linkable"])
        carried = carried_paths(files)
        link = [p for p in needed if p in linkable and p not in complete]
        send = [(p, self._resume_at(p, listed, probe)) for p in needed if p not in complete and p not in linkable]
        absent = [p for p, _ in send if carried is not None and p not in carried]
        if absent:
            raise BundleError(f"{absent[0]} is neither in this differential bundle nor verified on the host")
        to_send = sum(listed[p][0] - offset for p, offset in send)
        plan = (
            f"{len(send)} files, {to_send} bytes to send ({len(link)} linked from the bundle the host holds, "
            f"{len(complete & set(needed))} verified by an earlier transfer, {len(listed) - len(needed)} not needed)"
        )
        diff = {"before": f"bundle {probe['holds'] or '(none)'}\n", "after": f"bundle {digest}: {plan}\n"}
        if base_digest := (manifest.get("base") or {}).get("bundle_digest"):
            diff["after"] += f"assembled from base bundle {base_digest} and the files the differential bundle carries\n"
        common.update(changed=True, current=False, diff=diff, plan=plan, would_send_bytes=to_send,
                      send_files=len(send), kept_files=len(complete & set(needed)), link_files=len(link))  # fmt: skip
        if self._task.check_mode:
            return {**common, "msg": f"would send {plan}"}
        if probe["free_bytes"] < to_send + args["free_space_margin"]:
            raise BundleError(
                f"{task_vars.get('inventory_hostname')} has {probe['free_bytes']} bytes free beside {args['dest']}, "
                f"the transfer needs {to_send} plus a margin of {args['free_space_margin']}"
            )
        source = open_source(args["src"], listed, carried)
        params = {**base, "mode": "receive", "needed": needed, "link": link, "public_key": args["public_key"],
                  "resume": {p: o for p, o in send if o}, "subset": subset, "rehash_base": args["rehash_base"],
                  "sums_sha256": manifest["sha256sums_sha256"]}  # fmt: skip
        started = time.monotonic()
        done, sent = self._call(task_vars, params, lambda fd: send_members(fd, source, send, listed))
        common["stream_seconds"] = round(time.monotonic() - started, 3)
        if done.get("failed"):
            return {**common, "changed": False, "failed": True, "msg": done["msg"], "sent_bytes": sent}
        return {**common, **done, "current": True, "sent_bytes": sent}

    @staticmethod
    def _resume_at(path: str, listed: dict[str, tuple[int, str]], probe: dict[str, Any]) -> int:
        """Continue a partial member from its length (never for bundle.yaml and the other small files)."""
        have = int(probe["partial"].get(path, 0))
        return have if path not in META_NAMES and 0 < have < listed[path][0] else 0
