"""Action for ollama_airgap.deploy.airgap_bundle: ``state=inspected`` on a ``local`` connection (the usual
``delegate_to: localhost`` that reads bundle.yaml on the control node) runs in the controller's own process, as
ansible's own controller-side actions do; everything else runs the module on its host.

Starting a module costs a Python interpreter and an AnsiballZ payload, about half a second per host on a small
control node, paid once per host of the play; reading bundle.yaml is a few milliseconds."""

from __future__ import annotations

import tarfile
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_checks import (
    BundleError,
    hex64_problem,
)
from ansible_collections.ollama_airgap.deploy.plugins.module_utils.airgap_bundle_unpack import inspect_bundle


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        local = self._connection.transport.rsplit(".", 1)[-1] == "local"
        if args.get("state") != "inspected" or not local:  # as ansible's own action "normal" runs a module
            wrap_async = self._task.async_val and not self._connection.has_native_async
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        src, expected = args.get("src"), args.get("manifest_sha256")
        if not src:
            result.update(failed=True, msg="state is inspected but all of the following are missing: src")
        elif expected is not None and (problem := hex64_problem("manifest_sha256", expected)):
            result.update(failed=True, msg=problem)
        if result.get("failed"):
            return result
        try:
            result.update(inspect_bundle(src, expected))
        except BundleError as exc:
            result.update(failed=True, msg=f"{src}: {exc}")
        except tarfile.TarError as exc:
            result.update(failed=True, msg=f"{src}: not a readable tar archive ({exc})")
        return result
