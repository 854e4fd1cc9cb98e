// Package k8s holds the tests of the Kubernetes manifests beside it
// (base/ and overlays/). They render every overlay with kustomize's own
// library, decode each object strictly into its k8s.io/api type, and compare
// the result with what the services read (their config loaders, parsed with
// go/ast), the routes they serve, and deploy/nginx/nginx.conf. No cluster is
// needed.
package k8s
