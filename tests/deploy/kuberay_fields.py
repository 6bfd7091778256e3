"""The fields of KubeRay's ray.io/v1 custom resources, for checking manifests offline.

Written from KubeRay's API reference (the ray.io/v1 page of its documentation: RayCluster,
RayJob, RayService and the types they hold), not from its CRD files. A field's type is either
another table here, a scalar type, ``STRING_MAP`` (``object (keys:string, values:string)``),
or the name of a Kubernetes core type that ``kubernetes-validate`` checks with the
Kubernetes schemas (``PodTemplateSpec``, ``Service``, ``ObjectMeta``, ``k8s`` for the
rest). The list covers each type's documented fields, not only the ones headrace's manifests
use, so a misspelt or misplaced key is reported rather than taken for a newer field.
"""

from __future__ import annotations

from typing import Any

STRING_MAP = "map[string]string"
POD_TEMPLATE = "PodTemplateSpec"
SERVICE = "Service"
OBJECT_META = "ObjectMeta"
K8S = "k8s"  # a core type checked only for its presence (EnvVar, ResourceRequirements, ...)

Fields = dict[str, Any]

AUTOSCALER_OPTIONS: Fields = {
    "resources": K8S,
    "image": str,
    "imagePullPolicy": str,
    "securityContext": K8S,
    "idleTimeoutSeconds": int,
    "upscalingMode": ("Default", "Aggressive", "Conservative"),
    "version": ("v1", "v2"),
    "env": [K8S],
    "envFrom": [K8S],
    "volumeMounts": [K8S],
}

HEAD_GROUP_SPEC: Fields = {
    "template": POD_TEMPLATE,
    "headService": SERVICE,
    "enableIngress": bool,
    "rayStartParams": STRING_MAP,
    "serviceType": ("ClusterIP", "NodePort", "LoadBalancer"),
}

WORKER_GROUP_SPEC: Fields = {
    "suspend": bool,
    "groupName": str,
    "replicas": int,
    "minReplicas": int,
    "maxReplicas": int,
    "idleTimeoutSeconds": int,
    "rayStartParams": STRING_MAP,
    "template": POD_TEMPLATE,
    "scaleStrategy": {"workersToDelete": [str]},
    "numOfHosts": int,
}

GCS_FAULT_TOLERANCE: Fields = {
    "redisUsername": {"valueFrom": K8S, "value": str},
    "redisPassword": {"valueFrom": K8S, "value": str},
    "externalStorageNamespace": str,
    "redisAddress": str,
}

RAY_CLUSTER_SPEC: Fields = {
    "authOptions": {"mode": ("disabled", "token")},
    "suspend": bool,
    "managedBy": ("ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"),
    "autoscalerOptions": AUTOSCALER_OPTIONS,
    "headServiceAnnotations": STRING_MAP,
    "enableInTreeAutoscaling": bool,
    "gcsFaultToleranceOptions": GCS_FAULT_TOLERANCE,
    "headGroupSpec": HEAD_GROUP_SPEC,
    "rayVersion": str,
    "workerGroupSpecs": [WORKER_GROUP_SPEC],
}

DELETION_POLICY: Fields = {"policy": ("DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone")}

RAY_JOB_SPEC: Fields = {
    "activeDeadlineSeconds": int,
    "backoffLimit": int,
    "rayClusterSpec": RAY_CLUSTER_SPEC,
    "submitterPodTemplate": POD_TEMPLATE,
    "metadata": STRING_MAP,
    "clusterSelector": STRING_MAP,
    "submitterConfig": {"backoffLimit": int},
    "managedBy": ("ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"),
    "deletionStrategy": {"onSuccess": DELETION_POLICY, "onFailure": DELETION_POLICY},
    "entrypoint": str,
    "runtimeEnvYAML": str,
    "jobId": str,
    "submissionMode": ("K8sJobMode", "HTTPMode", "InteractiveMode"),
    "entrypointResources": str,
    "entrypointNumCpus": (int, float),
    "entrypointNumGpus": (int, float),
    "ttlSecondsAfterFinished": int,
    "shutdownAfterJobFinishes": bool,
    "suspend": bool,
    "schedule": str,
}

RAY_SERVICE_SPEC: Fields = {
    "serviceUnhealthySecondThreshold": int,  # deprecated, still accepted
    "deploymentUnhealthySecondThreshold": int,  # deprecated, still accepted
    "serveService": SERVICE,
    "upgradeStrategy": {"type": ("NewCluster", "NewClusterWithIncrementalUpgrade", "None")},
    "serveConfigV2": str,
    "rayClusterConfig": RAY_CLUSTER_SPEC,
    "excludeHeadPodFromServeSvc": bool,
}

KINDS: dict[str, Fields] = {
    "RayCluster": RAY_CLUSTER_SPEC,
    "RayJob": RAY_JOB_SPEC,
    "RayService": RAY_SERVICE_SPEC,
}

TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec"}
API_VERSION = "ray.io/v1"
