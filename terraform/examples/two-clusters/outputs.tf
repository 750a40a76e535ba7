output "west_gateway_config" {
  description = "west's gateway.toml."
  value       = module.west.gateway_config
}

output "east_gateway_config" {
  description = "east's gateway.toml."
  value       = module.east.gateway_config
}

output "west_join_token" {
  description = "west's one-time join token (write it to west's join.token)."
  value       = module.west.join_token
  sensitive   = true
}

output "east_join_token" {
  description = "east's one-time join token."
  value       = module.east.join_token
  sensitive   = true
}

output "trust_domain" {
  description = "The federation's trust domain."
  value       = data.isthmus_trust_bundle.current.trust_domain
}
