//! What the runner parses of the Jobs and pods it watches: slim readings of the Kubernetes types that skip, on
//! the wire, every field nothing reads (most of a pod template and of a pod), and are the same API resources for
//! `Api` and the watcher.

use super::manifest::CONTAINER_NAME;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A Job as the runner keeps it: metadata (without managed fields and annotations), status, deadline and the
/// executor container's resources (classification reads their limits). The watchers and the create answer parse
/// only these fields off the wire and skip the rest of the pod template (environment, volumes, security context)
/// without allocating it; the tracker keeps one per attempt for as long as the attempt runs. Every watcher sees
/// every executor Job of the installation, so this is most of what a dispatcher parses per Job. Same API
/// resource as [`Job`] (a `kube::Resource` for `Api` and the watcher).
#[derive(Debug, Clone, PartialEq)]
pub struct SlimJob(pub Job);

impl<'de> serde::Deserialize<'de> for SlimJob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use k8s_openapi::api::batch::v1::JobStatus;
        use serde::Deserialize;

        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: ObjectMeta,
            spec: Option<SpecWire>,
            status: Option<JobStatus>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SpecWire {
            active_deadline_seconds: Option<i64>,
            #[serde(default)]
            template: TemplateWire,
        }
        #[derive(Deserialize, Default)]
        struct TemplateWire {
            spec: Option<PodSpecWire>,
        }
        #[derive(Deserialize)]
        struct PodSpecWire {
            #[serde(default)]
            containers: Vec<ContainerWire>,
        }
        #[derive(Deserialize)]
        struct ContainerWire {
            name: String,
            resources: Option<ResourceRequirements>,
        }

        let wire = Wire::deserialize(deserializer)?;
        let spec = wire.spec.map(|spec| JobSpec {
            active_deadline_seconds: spec.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: None,
                spec: spec.template.spec.map(|pod| PodSpec {
                    containers: pod
                        .containers
                        .into_iter()
                        .filter(|c| c.name == CONTAINER_NAME)
                        .map(|c| Container { name: c.name, resources: c.resources, ..Default::default() })
                        .collect(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        });
        Ok(SlimJob(Job { metadata: kept_metadata(wire.metadata), spec, status: wire.status }))
    }
}

/// The metadata a slim Job or pod keeps: all but managed fields and annotations, which nothing reads.
fn kept_metadata(metadata: ObjectMeta) -> ObjectMeta {
    ObjectMeta { managed_fields: None, annotations: None, ..metadata }
}

/// `kube::Resource` for a slim reading of a Kubernetes type: the same API resource (group, version, kind, plural,
/// namespaced), so `Api` and the watcher address it exactly as the full type.
macro_rules! resource_as {
    ($slim:ty, $full:ty) => {
        impl kube::Resource for $slim {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::kind(dt)
            }

            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::group(dt)
            }

            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::version(dt)
            }

            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::plural(dt)
            }

            fn meta(&self) -> &ObjectMeta {
                &self.0.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.0.metadata
            }
        }
    };
}

resource_as!(SlimJob, Job);
resource_as!(SlimPod, Pod);

/// A pod as the runner reads it: metadata (without managed fields and annotations) and status, which is all
/// [`super::classify::PodState::from_pod`] reads. The spec, most of a pod, is skipped by the parser.
#[derive(Debug, Clone, PartialEq)]
pub struct SlimPod(pub Pod);

impl<'de> serde::Deserialize<'de> for SlimPod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use k8s_openapi::api::core::v1::PodStatus;

        #[derive(serde::Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: ObjectMeta,
            status: Option<PodStatus>,
        }

        let wire = Wire::deserialize(deserializer)?;
        Ok(SlimPod(Pod { metadata: kept_metadata(wire.metadata), spec: None, status: wire.status }))
    }
}
