output "role_name" {
  description = "Name of the workers' IAM role."
  value       = aws_iam_role.this.name
}

output "instance_profile_name" {
  description = "Name of the instance profile the workers run with."
  value       = aws_iam_instance_profile.this.name
}
