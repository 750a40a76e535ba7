output "name" {
  description = "The cluster's name."
  value       = isthmus_cluster.this.name
}

output "join_token" {
  description = "The one-time join token: write it to the gateway's join.token file. Sensitive, and stored in the state."
  value       = isthmus_cluster.this.join_token
  sensitive   = true
}

output "gateway_config" {
  description = "The gateway's config file (gateway.toml); it reads the token from join.token beside it and keeps its enrollment in state/."
  value       = local.gateway_config
}

output "state" {
  description = "The cluster's state when last read: pending until its gateway enrolls, then active."
  value       = isthmus_cluster.this.state
}
