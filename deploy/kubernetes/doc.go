// Package kubernetes holds the Kustomize manifests of Tidings (base/ and
// overlays/) and the test that renders every overlay with the kustomize Go
// API and validates each object offline against the Kubernetes API types.
package kubernetes
