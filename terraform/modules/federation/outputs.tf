output "configs" {
  description = "Each node's config file, by node name (isthmus federation serve --config FILE)."
  value       = local.configs
}

output "bootstrap" {
  description = "The commands that make the federation, run once after every node serves (with --bundle, --cert and --key of a platform admin)."
  value       = local.bootstrap
}

output "servers" {
  description = "The nodes' admin gRPC addresses, for the isthmus provider's servers."
  value       = [for n in var.nodes : n.admin]
}
