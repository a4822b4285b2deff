variable "region" {
  description = "AWS region for the bucket and the workers."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource (bucket, role, security group, launch template, Auto Scaling group); the workers' Role tag is NAME-worker."
  type        = string
  default     = "musicgen-batch"

  validation {
    # The generated bucket name starts with it (S3: lowercase), the role's name_prefix holds 38.
    condition     = can(regex("^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$", var.name))
    error_message = "name must be 1-24 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "tags" {
  description = "Extra tags for every resource, the workers' instances and volumes included."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.tags :
      !startswith(lower(key), "aws:") && length(key) >= 1 && length(key) <= 128 && length(value) <= 256
    ])
    error_message = "tags must have keys of 1-128 characters not starting with aws: and values of at most 256 characters."
  }
}

variable "availability_zones" {
  description = "Availability zones the workers may launch in, e.g. [\"us-east-1a\", \"us-east-1c\"]; empty: every zone that has a default subnet in the default VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for zone in var.availability_zones : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$", zone))])
    error_message = "availability_zones must be zone names such as us-east-1a."
  }
}

variable "instance_types" {
  description = "GPU instance types the spot workers may run on (an NVIDIA family the CUDA build of torch supports); several types of one GPU class widen the spot capacity pool, e.g. [\"g4dn.xlarge\", \"g4dn.2xlarge\"]."
  type        = list(string)
  default     = ["g4dn.xlarge"]

  validation {
    # Volta (p3) is left out: CUDA 13 and the current torch wheels dropped sm_70. g4ad (AMD) and
    # g5g (Arm) cannot run the x86 CUDA AMI.
    condition = length(var.instance_types) > 0 && length(distinct(var.instance_types)) == length(var.instance_types) && alltrue([
      for type in var.instance_types : can(regex("^(g4dn|g5|g6|g6e|gr6|p4d|p4de|p5|p5e|p5en)\\.[0-9a-z]+$", type))
    ])
    error_message = "instance_types must be a non-empty list of distinct NVIDIA GPU types of family g4dn, g5, g6, g6e, gr6, p4d, p4de, p5, p5e or p5en (e.g. [\"g4dn.xlarge\"])."
  }
}

variable "max_price" {
  description = "Spot max price in USD per hour per worker; also the hourly cost the worker's cost report uses."
  type        = number
  default     = 0.40

  # contract/defaults.py's MAX_PRICE_USD_PER_HOUR: the worker refuses a higher hourly cost.
  validation {
    condition     = var.max_price > 0 && var.max_price <= 1000
    error_message = "max_price must be greater than 0 and at most 1000 (USD per hour)."
  }
}

variable "worker_count" {
  description = "Number of spot workers; they share the prompts through leases in the bucket. 0 removes the workers and keeps the bucket."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_count >= 0 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number >= 0."
  }
}

variable "ami_id" {
  description = "AMI of the workers; empty uses the newest AMI named musicgen-batch-* owned by this account (built by packer/)."
  type        = string
  default     = ""

  validation {
    condition     = var.ami_id == "" || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "ami_id must be empty or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "git_repo_url" {
  description = "HTTPS URL of the git repository the workers clone (holds the worker and prompts.txt); the workers only reach the internet over HTTPS."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s']+$", var.git_repo_url))
    error_message = "git_repo_url must be an https:// URL without spaces or quotes (the security group allows HTTPS only)."
  }
}

variable "git_ref" {
  description = "Branch, tag or commit of git_repo_url the workers run; fetched again on every boot."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[^\\s']+$", var.git_ref))
    error_message = "git_ref must be a non-empty ref without spaces or quotes."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket for songs, reports, logs and bookkeeping; empty generates one starting with musicgen-batch-."
  type        = string
  default     = ""

  validation {
    condition = var.bucket_name == "" || alltrue([
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)),
      !strcontains(var.bucket_name, ".."),
      !can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.bucket_name)),
    ])
    error_message = "bucket_name must be empty or a valid S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit, no '..', not an IP address."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket with the songs still in it. False keeps songs safe: destroy stops at a non-empty bucket until it is emptied (or applied once with true)."
  type        = bool
  default     = false
}

variable "model_path" {
  description = "MusicGen model on the worker: the folder the Packer AMI holds, or a Hugging Face model id."
  type        = string
  default     = "/opt/musicgen/models/musicgen-small"

  validation {
    condition     = can(regex("^[^\\s']+$", var.model_path))
    error_message = "model_path must be a non-empty path or model id without spaces or quotes."
  }
}

variable "batch_size" {
  description = "Songs each worker generates together; 0 lets the worker choose from free GPU memory."
  type        = number
  default     = 0

  validation {
    condition     = var.batch_size >= 0 && floor(var.batch_size) == var.batch_size
    error_message = "batch_size must be a whole number >= 0."
  }
}

variable "audio_format" {
  description = "File format of the songs: wav (16-bit PCM) or flac (the same samples, about half the size)."
  type        = string
  default     = "wav"

  validation {
    condition     = contains(["wav", "flac"], var.audio_format)
    error_message = "audio_format must be wav or flac."
  }
}

variable "keep_alive" {
  description = "Keep each worker's instance up (and billing) after its batch ends, until terraform destroy; false: a finished worker removes its instance from the group (scale-in)."
  type        = bool
  default     = false
}

variable "max_hours" {
  description = "Hard cap on each worker's run in hours: then it saves its checkpoints and scales in whatever the state of the batch, so a bug or a hung model never bills for days."
  type        = number
  default     = 12

  # contract/defaults.py's MAX_HOURS, which the launcher and the worker enforce too.
  validation {
    condition     = var.max_hours > 0 && var.max_hours <= 720
    error_message = "max_hours must be greater than 0 and at most 720 (30 days)."
  }
}

variable "max_failed_boots" {
  description = "Boots that ran nothing (the git checkout failed, or no GPU was usable), counted batch-wide in the bucket's .boot-failures/, after which the failing instance sets the group's desired capacity to 0, so a broken token, repository or AMI costs a few short boots instead of an endless replacement loop."
  type        = number
  default     = 3

  validation {
    condition     = var.max_failed_boots >= 1 && floor(var.max_failed_boots) == var.max_failed_boots
    error_message = "max_failed_boots must be a whole number >= 1."
  }
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore to the workers' role, so Session Manager can open a shell on a worker (no inbound port); off by default."
  type        = bool
  default     = false
}

variable "root_volume_size_gb" {
  description = "Size in GB of each worker's encrypted gp3 root volume; at least the Packer AMI's root volume (100 GB)."
  type        = number
  default     = 100

  validation {
    condition     = var.root_volume_size_gb >= 100 && floor(var.root_volume_size_gb) == var.root_volume_size_gb
    error_message = "root_volume_size_gb must be a whole number >= 100, the size of the Packer AMI's root snapshot."
  }
}

variable "git_token_parameter" {
  description = "Name of an SSM Parameter Store SecureString (in this region, encrypted with the default aws/ssm key) holding a read-only token for a private git_repo_url; empty for a public repository. The workers' role may read this one parameter only."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_./-]*$", var.git_token_parameter)) && length(var.git_token_parameter) <= 2048
    error_message = "git_token_parameter must be empty or an SSM parameter name such as /musicgen/git-token (letters, digits, _ . - and /)."
  }
}
