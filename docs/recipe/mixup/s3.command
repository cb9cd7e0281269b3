mixup.py --arch resnet20 --epochs 30 --batch-size 128 --amp bf16 --seed 3 
