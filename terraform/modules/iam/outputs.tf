output "role_name" {
  description = "Name of the workers' IAM role."
  value       = aws_iam_role.this.name
}

output "role_arn" {
  description = "ARN of the workers' IAM role (the bucket policy names it)."
  value       = aws_iam_role.this.arn
}

output "instance_profile_name" {
  description = "Name of the instance profile the workers run with."
  value       = aws_iam_instance_profile.this.name
  # The launch template (and so every instance) only after the role has its permissions: an
  # instance launched before the policy is attached starts with a role that may do nothing.
  depends_on = [aws_iam_role_policy.this]
}
