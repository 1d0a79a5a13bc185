"""The LlamaDeployment API, v1alpha1: the single source of truth for the CRD.

Everything a user can write in a ``LlamaDeployment`` and everything the operator
reports back is declared in this package as frozen pydantic models with camelCase
aliases. ``crd.py`` turns these models into the CustomResourceDefinition (structural
schema, descriptions from the ``Field(description=...)`` texts, CEL rules from
``CEL_RULES``), and the reconcile loop parses every object through them, so the
schema the API server enforces and the one the operator trusts cannot drift apart.

Fields that later capabilities will act on are declared and validated before they
are acted on, so the API is designed once; ``NOT_YET_ACTIVE`` lists them (none
today), and the reconciler reports a warning condition when one is set, never
accepting it silently.

Its parts, from the bottom up: ``names`` (group, kind, patterns, the names of a
LlamaDeployment's children and variants), ``base`` (the base model and shared value
types), ``spec`` with ``rollout_spec``, ``security_spec`` and ``slo_spec`` (what a user
writes), ``status`` (what the operator reports), ``validation`` (the CEL rules and their
Python twin, ``parse_spec``) and ``units`` (durations, parameter counts, timestamps). Every
public name of those modules is re-exported here, so callers write ``api.Plan``,
``api.parse_spec``. ``conditions``, ``events`` and ``crd`` are imported by their own
names.
"""

from llama_operator.api.adapter_spec import DEFAULT_RUNTIME_SLOTS as DEFAULT_RUNTIME_SLOTS
from llama_operator.api.adapter_spec import MAX_ADAPTERS as MAX_ADAPTERS
from llama_operator.api.adapter_spec import Adapter as Adapter
from llama_operator.api.adapter_spec import AdapterLicense as AdapterLicense
from llama_operator.api.adapter_spec import AdapterStatus as AdapterStatus
from llama_operator.api.adapter_spec import AdapterUpdateMode as AdapterUpdateMode
from llama_operator.api.adapter_spec import AdapterUpdates as AdapterUpdates
from llama_operator.api.adapter_spec import TargetModule as TargetModule
from llama_operator.api.base import CheckpointQuantization as CheckpointQuantization
from llama_operator.api.base import Engine as Engine
from llama_operator.api.base import EngineChoice as EngineChoice
from llama_operator.api.base import Model as Model
from llama_operator.api.base import Optimize as Optimize
from llama_operator.api.base import Phase as Phase
from llama_operator.api.base import Quantization as Quantization
from llama_operator.api.base import QuantizationChoice as QuantizationChoice
from llama_operator.api.base import SecretKeyRef as SecretKeyRef
from llama_operator.api.names import API_VERSION as API_VERSION
from llama_operator.api.names import CANARY as CANARY
from llama_operator.api.names import CATEGORIES as CATEGORIES
from llama_operator.api.names import CIDR_PATTERN as CIDR_PATTERN
from llama_operator.api.names import DNS_1035_LABEL_PATTERN as DNS_1035_LABEL_PATTERN
from llama_operator.api.names import DNS_LABEL_MAX_LENGTH as DNS_LABEL_MAX_LENGTH
from llama_operator.api.names import DURATION_PATTERN as DURATION_PATTERN
from llama_operator.api.names import FALLBACK_PREFIX as FALLBACK_PREFIX
from llama_operator.api.names import GROUP as GROUP
from llama_operator.api.names import HOSTNAME_PATTERN as HOSTNAME_PATTERN
from llama_operator.api.names import IMAGE_PATTERN as IMAGE_PATTERN
from llama_operator.api.names import KIND as KIND
from llama_operator.api.names import MAX_FALLBACKS as MAX_FALLBACKS
from llama_operator.api.names import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from llama_operator.api.names import MODEL_ID_PATTERN as MODEL_ID_PATTERN
from llama_operator.api.names import NAME_FIX as NAME_FIX
from llama_operator.api.names import NAMESPACE_PATTERN as NAMESPACE_PATTERN
from llama_operator.api.names import OBJECT_NAME_PATTERN as OBJECT_NAME_PATTERN
from llama_operator.api.names import PARAMETERS_PATTERN as PARAMETERS_PATTERN
from llama_operator.api.names import PATTERN_HINTS as PATTERN_HINTS
from llama_operator.api.names import PLURAL as PLURAL
from llama_operator.api.names import PRIMARY as PRIMARY
from llama_operator.api.names import QUANTITY_PATTERN as QUANTITY_PATTERN
from llama_operator.api.names import SECRET_FLAG_PATTERN as SECRET_FLAG_PATTERN
from llama_operator.api.names import SECRET_FLAGS as SECRET_FLAGS
from llama_operator.api.names import SECRET_KEY_PATTERN as SECRET_KEY_PATTERN
from llama_operator.api.names import SERVICE_SUFFIXES as SERVICE_SUFFIXES
from llama_operator.api.names import SEVERAL_API_SERVERS_PATTERN as SEVERAL_API_SERVERS_PATTERN
from llama_operator.api.names import SHORT_NAMES as SHORT_NAMES
from llama_operator.api.names import SINGULAR as SINGULAR
from llama_operator.api.names import VERSION as VERSION
from llama_operator.api.names import fallback_index as fallback_index
from llama_operator.api.names import fallback_variant as fallback_variant
from llama_operator.api.names import name_problem as name_problem
from llama_operator.api.rollout_spec import DEFAULT_STEPS as DEFAULT_STEPS
from llama_operator.api.rollout_spec import Analysis as Analysis
from llama_operator.api.rollout_spec import ObjectRef as ObjectRef
from llama_operator.api.rollout_spec import OutcomeKind as OutcomeKind
from llama_operator.api.rollout_spec import Rollout as Rollout
from llama_operator.api.rollout_spec import RolloutStep as RolloutStep
from llama_operator.api.rollout_spec import TgiOutcomeKind as TgiOutcomeKind
from llama_operator.api.rollout_spec import Traffic as Traffic
from llama_operator.api.rollout_spec import VllmOutcomeKind as VllmOutcomeKind
from llama_operator.api.rollout_spec import default_steps as default_steps
from llama_operator.api.security_spec import APIKeySecretRef as APIKeySecretRef
from llama_operator.api.security_spec import Auth as Auth
from llama_operator.api.security_spec import AuthMode as AuthMode
from llama_operator.api.security_spec import Egress as Egress
from llama_operator.api.security_spec import EgressRule as EgressRule
from llama_operator.api.security_spec import IPBlock as IPBlock
from llama_operator.api.security_spec import LabelSelector as LabelSelector
from llama_operator.api.security_spec import LabelSelectorRequirement as LabelSelectorRequirement
from llama_operator.api.security_spec import Limits as Limits
from llama_operator.api.security_spec import Network as Network
from llama_operator.api.security_spec import NetworkPeer as NetworkPeer
from llama_operator.api.slo_spec import DEFAULT_MAX_ERROR_RATE as DEFAULT_MAX_ERROR_RATE
from llama_operator.api.slo_spec import (
    DEFAULT_MAX_P95_LATENCY_SECONDS as DEFAULT_MAX_P95_LATENCY_SECONDS,
)
from llama_operator.api.slo_spec import DEFAULT_WINDOW as DEFAULT_WINDOW
from llama_operator.api.slo_spec import MAX_WINDOW_SECONDS as MAX_WINDOW_SECONDS
from llama_operator.api.slo_spec import SLO as SLO
from llama_operator.api.spec import DEFAULT_TARGETS as DEFAULT_TARGETS
from llama_operator.api.spec import NOT_YET_ACTIVE as NOT_YET_ACTIVE
from llama_operator.api.spec import Autoscaling as Autoscaling
from llama_operator.api.spec import AutoscalingMetric as AutoscalingMetric
from llama_operator.api.spec import Failover as Failover
from llama_operator.api.spec import Fallback as Fallback
from llama_operator.api.spec import IntOrAuto as IntOrAuto
from llama_operator.api.spec import License as License
from llama_operator.api.spec import LlamaDeployment as LlamaDeployment
from llama_operator.api.spec import LlamaDeploymentSpec as LlamaDeploymentSpec
from llama_operator.api.spec import ModelCache as ModelCache
from llama_operator.api.spec import ModelSpec as ModelSpec
from llama_operator.api.spec import Placement as Placement
from llama_operator.api.spec import analysis_for as analysis_for
from llama_operator.api.spec import failover_policy as failover_policy
from llama_operator.api.status import ROLLOUT_IN_PROGRESS as ROLLOUT_IN_PROGRESS
from llama_operator.api.status import ROLLOUT_UNDER_TEST as ROLLOUT_UNDER_TEST
from llama_operator.api.status import AdapterActivity as AdapterActivity
from llama_operator.api.status import AnalysisNumbers as AnalysisNumbers
from llama_operator.api.status import AnalysisRun as AnalysisRun
from llama_operator.api.status import AutoscalingDecision as AutoscalingDecision
from llama_operator.api.status import AutoscalingStatus as AutoscalingStatus
from llama_operator.api.status import Condition as Condition
from llama_operator.api.status import ExcludedPool as ExcludedPool
from llama_operator.api.status import ExternalScalerRef as ExternalScalerRef
from llama_operator.api.status import FailoverStatus as FailoverStatus
from llama_operator.api.status import FallbackStatus as FallbackStatus
from llama_operator.api.status import LicenseStatus as LicenseStatus
from llama_operator.api.status import LlamaDeploymentStatus as LlamaDeploymentStatus
from llama_operator.api.status import ObservedCapacity as ObservedCapacity
from llama_operator.api.status import Plan as Plan
from llama_operator.api.status import PlanAdapter as PlanAdapter
from llama_operator.api.status import PlanChange as PlanChange
from llama_operator.api.status import PlanLora as PlanLora
from llama_operator.api.status import PlanMemory as PlanMemory
from llama_operator.api.status import RecoveryStatus as RecoveryStatus
from llama_operator.api.status import RolloutPhase as RolloutPhase
from llama_operator.api.status import RolloutStatus as RolloutStatus
from llama_operator.api.status import ServingStatus as ServingStatus
from llama_operator.api.units import epoch as epoch
from llama_operator.api.units import parse_duration as parse_duration
from llama_operator.api.units import parse_parameters as parse_parameters
from llama_operator.api.units import stamp as stamp
from llama_operator.api.validation import CEL_RULES as CEL_RULES
from llama_operator.api.validation import ROOT_CEL_RULES as ROOT_CEL_RULES
from llama_operator.api.validation import SpecError as SpecError
from llama_operator.api.validation import parse_spec as parse_spec
from llama_operator.api.validation import plan_inputs_hash as plan_inputs_hash
from llama_operator.api.validation import validate_spec as validate_spec
