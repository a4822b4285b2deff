output "bucket_name" {
  description = "S3 bucket holding songs, cost_report.csv, logs/ and the workers' bookkeeping."
  value       = module.storage.bucket_name
}

output "region" {
  description = "AWS region of the deployment."
  value       = var.region
}

output "worker_tag" {
  description = "Tag that marks every worker instance and volume."
  value       = module.worker.worker_tag
}

output "autoscaling_group_name" {
  description = "Auto Scaling group of the spot workers (its instances are found by the worker tag or the group)."
  value       = module.worker.autoscaling_group_name
}

output "audio_format" {
  description = "File format of the songs (wav or flac), so the launcher names the files the workers write."
  value       = var.audio_format
}
