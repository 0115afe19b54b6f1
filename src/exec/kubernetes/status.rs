//! kubectl's `rollout status` viewers: the line kubectl prints for a
//! workload's status, and whether the rollout is done.

use serde_json::Value;

use super::KubeError;

/// kubectl's `DeploymentStatusViewer.Status`: (message, done) or an error.
pub fn deployment_status_line(d: &Value) -> Result<(String, bool), KubeError> {
    let name = d
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if int("/metadata/generation") <= int("/status/observedGeneration") {
        let timed_out = d
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded"
                })
            });
        if timed_out {
            return Err(KubeError::ProgressDeadlineExceeded(name.to_owned()));
        }
        let updated = int("/status/updatedReplicas");
        if let Some(spec) = d.pointer("/spec/replicas").and_then(Value::as_i64)
            && updated < spec
        {
            return Ok((
                format!(
                    "Waiting for deployment {name:?} rollout to finish: {updated} out of {spec} new replicas have been updated...\n"
                ),
                false,
            ));
        }
        let replicas = int("/status/replicas");
        if replicas > updated {
            return Ok((
                format!(
                    "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...\n",
                    replicas - updated
                ),
                false,
            ));
        }
        let available = int("/status/availableReplicas");
        if available < updated {
            return Ok((
                format!(
                    "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available...\n"
                ),
                false,
            ));
        }
        return Ok((
            format!("deployment {name:?} successfully rolled out\n"),
            true,
        ));
    }
    Ok((
        "Waiting for deployment spec update to be observed...\n".into(),
        false,
    ))
}

/// kubectl's `DaemonSetStatusViewer.Status`.
pub fn daemonset_status_line(ds: &Value) -> Result<(String, bool), KubeError> {
    let name = ds
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let int = |p: &str| ds.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("RollingUpdate")
    {
        return Err(KubeError::Unsupported(
            "rollout status is only available for RollingUpdate strategy type".into(),
        ));
    }
    if int("/metadata/generation") <= int("/status/observedGeneration") {
        let (updated, desired, available) = (
            int("/status/updatedNumberScheduled"),
            int("/status/desiredNumberScheduled"),
            int("/status/numberAvailable"),
        );
        if updated < desired {
            return Ok((
                format!(
                    "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated...\n"
                ),
                false,
            ));
        }
        if available < desired {
            return Ok((
                format!(
                    "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available...\n"
                ),
                false,
            ));
        }
        return Ok((
            format!("daemon set {name:?} successfully rolled out\n"),
            true,
        ));
    }
    Ok((
        "Waiting for daemon set spec update to be observed...\n".into(),
        false,
    ))
}

/// kubectl's `StatefulSetStatusViewer.Status`.
pub fn statefulset_status_line(sts: &Value) -> Result<(String, bool), KubeError> {
    let int = |p: &str| sts.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let s = |p: &str| {
        sts.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if sts
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("RollingUpdate")
    {
        return Err(KubeError::Unsupported(
            "rollout status is only available for RollingUpdate strategy type".into(),
        ));
    }
    if int("/status/observedGeneration") == 0
        || int("/metadata/generation") > int("/status/observedGeneration")
    {
        return Ok((
            "Waiting for statefulset spec update to be observed...\n".into(),
            false,
        ));
    }
    let replicas = sts.pointer("/spec/replicas").and_then(Value::as_i64);
    if let Some(r) = replicas
        && int("/status/readyReplicas") < r
    {
        return Ok((
            format!(
                "Waiting for {} pods to be ready...\n",
                r - int("/status/readyReplicas")
            ),
            false,
        ));
    }
    if sts
        .pointer("/spec/updateStrategy/rollingUpdate")
        .is_some_and(|v| !v.is_null())
    {
        if let (Some(r), Some(p)) = (
            replicas,
            sts.pointer("/spec/updateStrategy/rollingUpdate/partition")
                .and_then(Value::as_i64),
        ) && int("/status/updatedReplicas") < r - p
        {
            return Ok((
                format!(
                    "Waiting for partitioned roll out to finish: {} out of {} new pods have been updated...\n",
                    int("/status/updatedReplicas"),
                    r - p
                ),
                false,
            ));
        }
        return Ok((
            format!(
                "partitioned roll out complete: {} new pods have been updated...\n",
                int("/status/updatedReplicas")
            ),
            true,
        ));
    }
    if s("/status/updateRevision") != s("/status/currentRevision") {
        return Ok((
            format!(
                "waiting for statefulset rolling update to complete {} pods at revision {}...\n",
                int("/status/updatedReplicas"),
                s("/status/updateRevision")
            ),
            false,
        ));
    }
    Ok((
        format!(
            "statefulset rolling update complete {} pods at revision {}...\n",
            int("/status/currentReplicas"),
            s("/status/currentRevision")
        ),
        true,
    ))
}
