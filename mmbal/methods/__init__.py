"""The balancing methods of the trainer, one module each; importing the package registers them.

``REGISTRY`` maps ``method.name`` to its `Method` (settings, requirements, ``build``). To add
a method, see docs/adding-a-method.md.
"""
from mmbal.methods.base import (REGISTRY, Method, MethodContext, MethodSpec, NoSettings, get,
                                methods_for, setting, task_kind)
# Registration order is the order of listings (configs, docs, benchmarks).
from mmbal.methods import (joint, unimodal, ogm_ge, agm, cggm, miles, gradient_blending,  # noqa: F401
                           pcgrad, mmpareto, balgrad, sam, msam, mnl, pmr, mla, lnln)
