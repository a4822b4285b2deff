provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "musicgen-batch"
    }
  }
}

module "storage" {
  source = "./modules/storage"

  bucket_name   = var.bucket_name
  force_destroy = var.force_destroy
}

module "iam" {
  source = "./modules/iam"

  bucket_arn          = module.storage.bucket_arn
  git_token_parameter = var.git_token_parameter
}

module "worker" {
  source = "./modules/worker"

  worker_count          = var.worker_count
  instance_type         = var.instance_type
  max_price             = var.max_price
  ami_id                = var.ami_id
  availability_zone     = var.availability_zone
  root_volume_size_gb   = var.root_volume_size_gb
  instance_profile_name = module.iam.instance_profile_name

  region             = var.region
  bucket_name        = module.storage.bucket_name
  git_repo_url       = var.git_repo_url
  git_ref            = var.git_ref
  model_path         = var.model_path
  batch_size         = var.batch_size
  audio_format       = var.audio_format
  shutdown_when_done = var.shutdown_when_done

  git_token_parameter = var.git_token_parameter
}
