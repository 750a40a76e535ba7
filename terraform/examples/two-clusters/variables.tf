variable "servers" {
  description = "The federation nodes' admin gRPC addresses (host:port)."
  type        = list(string)
}

variable "bundle" {
  description = "The federation's trust bundle (PEM file)."
  type        = string
}

variable "cert" {
  description = "A platform admin's certificate chain (PEM file)."
  type        = string
}

variable "key" {
  description = "Its key (PEM file)."
  type        = string
  sensitive   = true
}

variable "echo_endpoints" {
  description = "Where west's echo service runs (host:port each)."
  type        = list(string)
}

variable "west_quic" {
  description = "host:port of west's gateway."
  type        = string
  default     = "127.0.0.1:15443"
}

variable "east_quic" {
  description = "host:port of east's gateway."
  type        = string
  default     = "127.0.0.1:15444"
}
