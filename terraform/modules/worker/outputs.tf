output "autoscaling_group_name" {
  description = "Name of the workers' Auto Scaling group."
  value       = aws_autoscaling_group.this.name
}

output "launch_template_id" {
  description = "Launch template of the workers."
  value       = aws_launch_template.this.id
}

output "security_group_id" {
  description = "Security group of the workers (egress only)."
  value       = aws_security_group.this.id
}

output "worker_tag" {
  description = "Tag on every worker instance and root volume."
  value       = local.worker_tag
}
