output "instance_ids" {
  description = "Instance ids of the workers."
  value       = aws_instance.this[*].id
}

output "security_group_id" {
  description = "Security group of the workers (egress only)."
  value       = aws_security_group.this.id
}

output "worker_tag" {
  description = "Tag on every worker instance and root volume."
  value       = local.worker_tag
}
