output "bucket_name" {
  description = "S3 bucket holding songs, cost_report.csv, logs/ and the workers' bookkeeping."
  value       = module.storage.bucket_name
}

output "instance_ids" {
  description = "EC2 instance ids of the spot workers."
  value       = module.worker.instance_ids
}

output "region" {
  description = "AWS region of the deployment."
  value       = var.region
}

output "worker_tag" {
  description = "Tag that marks every worker instance and volume."
  value       = module.worker.worker_tag
}
